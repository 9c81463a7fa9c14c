#!/usr/bin/env bash
# Runs the JavaScript tests of the npm package (store-wasm/js-tests): the
# package as a web page imports it, in headless Chromium, syncing through a
# real sync-server on a temporary SQLite file.
#
#   scripts/test-browser.sh [--dev] [WORD...]
#
# Installs the browser tools when missing, builds the package
# (scripts/build-wasm.sh; `--dev` for a quicker debug build), installs the
# tests' npm dependencies when missing or when package-lock.json changed,
# then runs store-wasm/js-tests/run.mjs (WORDs pick test files by name).
#
# Set ZESTOR_REQUIRE_ALL=1 (CI does) to turn any skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[test-browser]\033[0m %s\n' "$*"; }

build=()
if [[ "${1:-}" == "--dev" ]]; then
  build=(--dev)
  shift
fi

scripts/install-browser-tools.sh
scripts/build-wasm.sh "${build[@]}"

cd store-wasm/js-tests
# npm keeps a copy of the lock it installed from; `npm ci` again only when
# the committed lock differs from it.
installed=node_modules/.zestor-installed-lock.json
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json "$installed"; then
  say "npm ci (store-wasm/js-tests)"
  npm ci --no-audit --no-fund
  cp package-lock.json "$installed"
fi

say "node run.mjs $*"
node run.mjs "$@"
