#!/usr/bin/env bash
# Builds the npm package `zestor` (crate store-wasm) into store-wasm/pkg/npm:
# wasm-pack builds the module and its glue (--target web, the `wasm-release`
# cargo profile of the root Cargo.toml, wasm-opt) into store-wasm/pkg/bindgen,
# then store-wasm/npm/build.mjs adds the entry points (`zestor`, `zestor/url`,
# `zestor/react`), the types and package.json. One package for every bundler
# and for <script type="module">: store-wasm/README.md, "Install".
#
# `--dev`: a debug build (no wasm-opt), faster to rebuild while working on
# the package.
#
# Needs wasm-pack, wasm-bindgen and wasm-opt: scripts/install-browser-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m[build-wasm]\033[0m %s\n' "$*"; }

mode=release
for arg in "$@"; do
  case "$arg" in
    --dev) mode=dev ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: $0 [--dev]" >&2
      exit 2
      ;;
  esac
done

if [[ $mode == dev ]]; then
  profile=(--dev)
else
  # wasm-pack 0.15 passes --profile to cargo as is; for wasm-opt's flags it
  # reads [package.metadata.wasm-pack.profile.custom] (default: -O), not
  # profile.release.
  profile=(--profile wasm-release)
  # wasm-pack runs the first wasm-opt on PATH: binaryen from store-wasm/tools.
  # An older one (Debian bookworm's 108) corrupts the module; refuse it.
  export PATH="$PWD/store-wasm/tools/node_modules/.bin:$PATH"
  wasm_opt=$(wasm-opt --version 2>/dev/null | sed -n 's/^wasm-opt version \([0-9]*\).*/\1/p')
  if [[ -z "$wasm_opt" || "$wasm_opt" -lt 116 ]]; then
    echo "wasm-opt ${wasm_opt:-not found}: version 116 or later is needed; run scripts/install-browser-tools.sh" >&2
    exit 1
  fi
fi

say "wasm-pack build ($mode, --target web) -> store-wasm/pkg/bindgen"
start=$SECONDS
# Builds of earlier layouts (one folder per wasm-pack target).
rm -rf store-wasm/pkg/web store-wasm/pkg/bundler
wasm-pack build store-wasm "${profile[@]}" --weak-refs --target web --out-dir pkg/bindgen
say "built store-wasm/pkg/bindgen in $((SECONDS - start)) s"

node store-wasm/npm/build.mjs store-wasm/pkg/bindgen store-wasm/pkg/npm
wasm=store-wasm/pkg/npm/zestor_bg.wasm
say "$wasm: $(wc -c <"$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) bytes gzipped ($mode)"
say "the package: store-wasm/pkg/npm (cd there and npm pack to make its tarball)"
