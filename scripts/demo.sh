#!/usr/bin/env bash
# Runs the web demo: the task board of web-demo/ on the npm package, served
# by sync-server with the dev tokens and the demo's schemas, data in
# ./zestor.db. Open the http:// address it prints, in two windows.
#
#   scripts/demo.sh                      # http://127.0.0.1:8787
#   scripts/demo.sh --listen 0.0.0.0:80  # any other sync-server option
#
# The first run builds the package (scripts/build-wasm.sh, after
# scripts/install-browser-tools.sh, which also installs Chromium from apt
# when it is missing) and the server; later runs rebuild neither unless
# their sources changed. Options given here, or their ZESTOR_… environment
# variables, replace the demo's defaults (--db, --tokens, --schemas,
# --static-dir). ZESTOR_PKG_DIR=DIR serves that build of the package
# instead of building store-wasm/pkg/npm.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }

case "${1:-}" in
  -h | --help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

pkg=${ZESTOR_PKG_DIR:-store-wasm/pkg/npm}
dist=web-demo/dist
stamp=web-demo/.package-stamp

# The package is rebuilt when its sources or its build changed since the
# last build made here, or when store-wasm/pkg/npm no longer holds that
# build (another script rebuilt it).
inputs() {
  find Cargo.toml Cargo.lock rust-toolchain.toml store-core/Cargo.toml store-core/src \
    store-wasm/Cargo.toml store-wasm/src store-wasm/npm store-wasm/README.md store-wasm/tools/package-lock.json scripts/build-wasm.sh \
    -type f 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}
built() {
  cat "$pkg/glue.js" "$pkg/zestor_bg.wasm" 2>/dev/null | sha256sum | cut -d' ' -f1
}
want="$(inputs)"
if [[ -n ${ZESTOR_PKG_DIR:-} ]]; then
  [[ -f $pkg/url.js ]] || { echo "ZESTOR_PKG_DIR=$pkg: no url.js there (not a built package)" >&2; exit 1; }
  say "serving the package built in $pkg (ZESTOR_PKG_DIR)"
elif [[ -f $stamp && "$(cat "$stamp")" == "$want $(built)" ]]; then
  say "the npm package is up to date ($pkg)"
else
  say "building the npm package (first run, or its sources changed)"
  scripts/install-browser-tools.sh
  scripts/build-wasm.sh
  echo "$want $(built)" >"$stamp"
fi

# The served folder: the app, and at /pkg/ the files of the package that
# `zestor/url` loads, as a site that serves them itself ships them.
say "assembling $dist"
rm -rf "$dist"
mkdir -p "$dist/pkg"
cp web-demo/app/* "$dist/"
cp -R "$pkg/url.js" "$pkg/loader.js" "$pkg/glue.js" "$pkg/snippets" "$pkg/zestor_bg.wasm" "$dist/pkg/"
# What the service worker caches for an offline reload.
(
  cd "$dist"
  printf '{"files": ["./"'
  find . -type f ! -name sw.js ! -name precache.json ! -name '*.d.ts' | LC_ALL=C sort | sed 's|^\./||' |
    while read -r f; do printf ', "%s"' "$f"; done
  printf ']}\n'
) >"$dist/precache.json"

# The demo's defaults, unless given as options or environment variables.
args=()
default() {
  local flag=$1 env=$2 value=$3 arg
  [[ -n "${!env:-}" ]] && return
  for arg in "${user_args[@]}"; do
    [[ $arg == "$flag" || $arg == "$flag="* ]] && return
  done
  args+=("$flag" "$value")
}
user_args=("$@")
default --db ZESTOR_DB sqlite://zestor.db
default --tokens ZESTOR_TOKENS sync-server/dev-tokens.txt
default --schemas ZESTOR_SCHEMAS web-demo/schemas
default --static-dir ZESTOR_STATIC "$dist"

say "building sync-server (release)"
cargo build --release -p sync-server
say "starting the server: open the http:// address below (in two windows to see sync); Ctrl-C stops it"
exec cargo run -q --release -p sync-server -- "${args[@]}" "$@"
