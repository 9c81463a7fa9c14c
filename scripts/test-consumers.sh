#!/usr/bin/env bash
# The npm package as apps get it: packs store-wasm/pkg/npm, installs the
# tarball into tests/consumers next to the pinned Vite, webpack, esbuild,
# Rollup, React and TypeScript, and runs tests/consumers (each app built
# with its tool's defaults and run in headless Chromium against a real
# sync-server; strict tsc over the README's examples).
#
#   scripts/test-consumers.sh [WORD...]   only the test files whose name contains a WORD
#
# Builds the package (release) unless ZESTOR_PKG_DIR names a built one.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[test-consumers]\033[0m %s\n' "$*"; }

scripts/install-browser-tools.sh
if [[ -z "${ZESTOR_PKG_DIR:-}" ]]; then
  scripts/build-wasm.sh
else
  # The runner works from tests/consumers.
  ZESTOR_PKG_DIR=$(realpath "$ZESTOR_PKG_DIR")
  export ZESTOR_PKG_DIR
fi

cd tests/consumers
installed=node_modules/.zestor-installed-lock.json
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json "$installed"; then
  say "npm ci (tests/consumers)"
  npm ci --no-audit --no-fund
  cp package-lock.json "$installed"
fi

say "node run.mjs $*"
node run.mjs "$@"
