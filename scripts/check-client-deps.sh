#!/usr/bin/env bash
# The native sync client alone (`sync-server` with default features off)
# builds without the server's dependencies: a Rust app that only syncs
# compiles no web server, no SQLite and no PostgreSQL driver. It does
# compile what `wss://` needs (rustls, tokio-rustls, rustls-native-certs).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo check -q -p sync-server --no-default-features --lib

deps=$(cargo tree -p sync-server --no-default-features -e normal --prefix none)
if bad=$(grep -E '^(axum|hyper|hyper-util|tower-http|rusqlite|libsqlite3-sys|tokio-postgres|clap|tracing-subscriber|jsonwebtoken|reqwest) ' <<<"$deps"); then
  echo "the client-only build of sync-server pulls in server dependencies:" >&2
  sort -u <<<"$bad" >&2
  exit 1
fi
if ! grep -qE '^tokio-rustls ' <<<"$deps"; then
  echo "the client-only build of sync-server lost its TLS (wss://)" >&2
  exit 1
fi
echo "sync-server client only: builds, with wss://, without axum, hyper, rusqlite, tokio-postgres, clap or the JWT verifier"
