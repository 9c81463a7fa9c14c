#!/usr/bin/env bash
# Runs the end-to-end tests of the web demo (tests/e2e): the task board of
# web-demo/ as scripts/demo.sh serves it, in headless Chromium, two browsers
# against a real sync-server on a temporary SQLite file: live sync, offline
# work across a reload, a server killed and restarted, refusals, concurrent
# edits.
#
#   scripts/test-e2e.sh [--no-build] [WORD...]
#
# Installs the browser tools when missing, installs the tests' npm
# dependencies when missing or when package-lock.json changed, then runs
# tests/e2e/run.mjs, which builds what the demo serves the way
# scripts/demo.sh does (the npm package when its sources changed,
# web-demo/dist, sync-server) unless --no-build is given. WORDs pick test
# files by name. Screenshots go to tests/e2e/artifacts/.
#
# Set ZESTOR_REQUIRE_ALL=1 (CI does) to turn any skipped test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[test-e2e]\033[0m %s\n' "$*"; }

scripts/install-browser-tools.sh

cd tests/e2e
# npm keeps a copy of the lock it installed from; `npm ci` again only when
# the committed lock differs from it.
installed=node_modules/.zestor-installed-lock.json
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json "$installed"; then
  say "npm ci (tests/e2e)"
  npm ci --no-audit --no-fund
  cp package-lock.json "$installed"
fi

say "node run.mjs $*"
node run.mjs "$@"
