#!/usr/bin/env bash
# Runs the browser tests of the npm package's Rust code (store-wasm/tests/*.rs:
# the store-core conformance suite and the persistence tests of IdbStore) in
# headless Chromium:
#
#   wasm-pack test --headless --chrome store-wasm
#
# Extra arguments go to wasm-pack, e.g. `scripts/test-wasm.sh --test persistence`.
#
# Needs wasm-pack, Chromium and its driver (scripts/install-browser-tools.sh
# installs them). Without them the tests are skipped, or fail when
# ZESTOR_REQUIRE_ALL=1 (CI). The browser's flags are in store-wasm/webdriver.json.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[test-wasm]\033[0m %s\n' "$*"; }

# The Debian driver; with it set, wasm-pack never tries to download one.
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
# wasm-bindgen-test-runner gives a whole test binary 20 s by default; a cold,
# busy 2-core machine can need more for the conformance suite.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"

missing=()
command -v wasm-pack >/dev/null 2>&1 || missing+=(wasm-pack)
[[ -x "$CHROMEDRIVER" ]] || missing+=("chromedriver ($CHROMEDRIVER)")
# webdriver.json names the browser binary.
browser=$(sed -n 's/.*"binary": *"\([^"]*\)".*/\1/p' store-wasm/webdriver.json)
[[ -z "$browser" || -x "$browser" ]] || missing+=("chromium ($browser)")
if ((${#missing[@]})); then
  if [[ "${ZESTOR_REQUIRE_ALL:-}" == 1 ]]; then
    echo "error: ZESTOR_REQUIRE_ALL=1 and the browser tests cannot run: missing ${missing[*]}" >&2
    echo "run scripts/install-browser-tools.sh" >&2
    exit 1
  fi
  say "skipped: missing ${missing[*]} (run scripts/install-browser-tools.sh)"
  exit 0
fi

say "wasm-pack test --headless --chrome store-wasm $*"
wasm-pack test --headless --chrome store-wasm "$@"
