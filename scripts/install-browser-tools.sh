#!/usr/bin/env bash
# Installs what building the npm package and testing it in a browser needs,
# when it is missing: Chromium and its driver, wasm-pack, the wasm-bindgen
# CLI of the version in Cargo.lock, wasm-opt (binaryen, from npm) and the
# wasm32 target. Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[browser-tools]\033[0m %s\n' "$*"; }

WASM_PACK_VERSION=0.15.1

scripts/setup.sh

# Debian packages. `apt-get update` only when something is missing.
# Not Debian's binaryen: bookworm's (108) writes wasm-bindgen's externref
# table export as the function table, and the module then fails in init().
missing=()
for pkg in chromium chromium-driver; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    sudo=(sudo)
  fi
  say "installing ${missing[*]} (apt)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
say "chromium ready: $(/usr/bin/chromium --version 2>/dev/null)"

# wasm-pack, pinned.
if [[ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $WASM_PACK_VERSION" ]]; then
  say "installing wasm-pack $WASM_PACK_VERSION (cargo install)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi
say "wasm-pack ready: $(wasm-pack --version)"

# wasm-pack would download the wasm-bindgen CLI from GitHub (unreachable
# here) and then fall back to a `cargo install` into its cache; installing it
# up front, at the version Cargo.lock pins, makes that step explicit and
# lets wasm-pack find it on PATH.
bindgen_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z "$bindgen_version" ]]; then
  echo "cannot find the wasm-bindgen version in Cargo.lock" >&2
  exit 1
fi
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $bindgen_version" ]]; then
  say "installing wasm-bindgen-cli $bindgen_version (cargo install)"
  # Its lock file can name a dependency release the registry no longer
  # serves (yanked); then resolve afresh.
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked ||
    cargo install wasm-bindgen-cli --version "$bindgen_version"
fi
say "wasm-bindgen ready: $(wasm-bindgen --version)"

# wasm-opt: binaryen's own build from npm (pinned in store-wasm/tools), which
# scripts/build-wasm.sh puts first on wasm-pack's PATH. `npm ci` again only
# when the lock differs from the one last installed.
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is required (Node.js 20 or later)" >&2
  exit 1
fi
tools=store-wasm/tools
if [[ ! -x $tools/node_modules/.bin/wasm-opt ]] || ! cmp -s $tools/package-lock.json $tools/node_modules/.zestor-installed-lock.json; then
  say "installing binaryen (npm ci in $tools)"
  (cd $tools && npm ci --no-audit --no-fund && cp package-lock.json node_modules/.zestor-installed-lock.json)
fi
say "wasm-opt ready: $($tools/node_modules/.bin/wasm-opt --version)"
