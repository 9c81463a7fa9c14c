#!/usr/bin/env bash
# Runs the benchmarks: store-core (criterion), the durable backends, the sync
# server under load, and the npm package in headless Chromium. `--quick` runs
# each briefly to check they still work.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [[ "${1:-}" == "--quick" ]]; then
  quick=(--quick)
  cargo bench -p store-core --bench core -- --test
else
  cargo bench -p store-core --bench core
fi
cargo bench -p sync-server --bench backends -- "${quick[@]}"
cargo build --release -p sync-server --bin sync-server
cargo bench -p sync-server --bench load -- "${quick[@]}"

# The browser bench needs the package built and its npm packages.
scripts/install-browser-tools.sh
scripts/build-wasm.sh
bench=store-wasm/bench
if [[ ! -d $bench/node_modules || $bench/package-lock.json -nt $bench/node_modules/.package-lock.json ]]; then
  (cd $bench && npm ci --no-audit --no-fund)
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
ZESTOR_SYNC_SERVER="$target_dir/release/sync-server" node $bench/run.mjs "${quick[@]}"
