#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md with the latency plots
# (docs/bench/*.svg) and the results they come from (docs/bench/results/):
# store-core (criterion), the durable backends, the sync server under load,
# the sync server next to a peer (TinyBase), and the npm package in headless
# Chromium. About 15 minutes on 2 cores.
#
# `--quick` runs each briefly to check the suite still works (CI) and writes
# the report into $CARGO_TARGET_DIR/bench-quick/ instead, leaving the
# published figures alone.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
case "${1:-}" in
  --quick) quick=(--quick) ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m[bench]\033[0m %s\n' "$*"; }

scripts/setup.sh
scripts/ensure-postgres.sh
export DATABASE_URL="${DATABASE_URL:-host=127.0.0.1 port=5432 user=postgres dbname=test}"
target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')

if [[ ${#quick[@]} -gt 0 ]]; then
  out="$target_dir/bench-quick"
  report=(--out "$out/BENCHMARKS.md" --plots "$out")
else
  out="$PWD/docs/bench/results"
  report=(--out BENCHMARKS.md --plots docs/bench)
fi
rm -rf "$out"
mkdir -p "$out"
# Every benchmark writes its <suite>.json here (bench/RESULTS-FORMAT.md).
export ZESTOR_BENCH_OUT="$out"

# Installs the npm packages of a folder when its lock changed since.
npm_ci() {
  if [[ ! -d $1/node_modules || $1/package-lock.json -nt $1/node_modules/.package-lock.json ]]; then
    (cd "$1" && npm ci --no-audit --no-fund)
  fi
}

say "core (store-core/benches/core.rs)"
if [[ ${#quick[@]} -gt 0 ]]; then
  cargo bench -p store-core --bench core -- --test
else
  cargo bench -p store-core --bench core
fi

say "durable backends (sync-server/benches/backends.rs)"
cargo bench -p sync-server --bench backends -- "${quick[@]}"

say "sync server under load (sync-server/benches/load.rs)"
cargo build --release -p sync-server --bin sync-server
cargo bench -p sync-server --bench load -- "${quick[@]}"

say "sync server next to TinyBase (bench/peers)"
npm_ci bench/peers
ZESTOR_SYNC_SERVER="$target_dir/release/sync-server" node bench/peers/run.mjs "${quick[@]}"

say "the npm package in headless Chromium (store-wasm/bench)"
scripts/install-browser-tools.sh
scripts/build-wasm.sh
npm_ci store-wasm/bench
ZESTOR_SYNC_SERVER="$target_dir/release/sync-server" node store-wasm/bench/run.mjs "${quick[@]}"

say "report"
node bench/report.mjs --in "$out" "${report[@]}"
