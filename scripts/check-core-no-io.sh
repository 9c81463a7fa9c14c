#!/usr/bin/env bash
# store-core must stay a no-I/O engine: it builds for wasm32-unknown-unknown,
# depends on no runtime or browser binding, and reads no clock, file or socket.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -q -p store-core --all-features --target wasm32-unknown-unknown

deps=$(cargo tree -p store-core --all-features --target wasm32-unknown-unknown -e normal --prefix none)
if bad=$(grep -E '^(tokio|js-sys|web-sys|wasm-bindgen|getrandom|mio|async-std|smol) ' <<<"$deps"); then
  echo "store-core must not depend on a runtime, a browser binding or an OS RNG:" >&2
  echo "$bad" >&2
  exit 1
fi

if bad=$(grep -rnE 'std::(time|fs|net|process|env)\b|\b(Instant|SystemTime)::|\bthread::sleep\b' store-core/src --include=*.rs | grep -v '^store-core/src/testkit/threaded.rs'); then
  echo "store-core reads a clock, a file, a socket or the environment:" >&2
  echo "$bad" >&2
  exit 1
fi
echo "store-core: wasm32 build ok, no runtime dependency, no clock/file/socket use"
