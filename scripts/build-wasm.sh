#!/usr/bin/env bash
# Builds the npm package (store-wasm, crate `zestor`) with wasm-pack:
#   store-wasm/pkg/web      --target web: an ES module with `init()`, loaded
#                           by the browser tests and by <script type="module">
#   store-wasm/pkg/bundler  --target bundler: for webpack, Vite and the like
# both with the `wasm-release` cargo profile (root Cargo.toml) and wasm-opt.
#
# `--dev`: a debug build of the web target only (no wasm-opt), faster to
# rebuild while working on the package.
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
      sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
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
  targets=(web)
else
  # wasm-pack 0.15 passes --profile to cargo as is; for wasm-opt's flags it
  # reads [package.metadata.wasm-pack.profile.custom] (default: -O), not
  # profile.release.
  profile=(--profile wasm-release)
  targets=(web bundler)
  # wasm-pack runs the first wasm-opt on PATH: binaryen from store-wasm/tools.
  # An older one (Debian bookworm's 108) corrupts the module; refuse it.
  export PATH="$PWD/store-wasm/tools/node_modules/.bin:$PATH"
  wasm_opt=$(wasm-opt --version 2>/dev/null | sed -n 's/^wasm-opt version \([0-9]*\).*/\1/p')
  if [[ -z "$wasm_opt" || "$wasm_opt" -lt 116 ]]; then
    echo "wasm-opt ${wasm_opt:-not found}: version 116 or later is needed; run scripts/install-browser-tools.sh" >&2
    exit 1
  fi
fi

for target in "${targets[@]}"; do
  say "wasm-pack build ($mode, --target $target) -> store-wasm/pkg/$target"
  start=$SECONDS
  wasm-pack build store-wasm "${profile[@]}" --weak-refs \
    --target "$target" --out-dir "pkg/$target"
  say "built store-wasm/pkg/$target in $((SECONDS - start)) s"
done

for target in "${targets[@]}"; do
  wasm="store-wasm/pkg/$target/zestor_bg.wasm"
  raw=$(wc -c <"$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  say "$wasm: $raw bytes, $gz bytes gzipped ($mode)"
done
