#!/usr/bin/env bash
# Runs the benchmarks. `--quick` runs each briefly to check they still work.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--quick" ]]; then
  cargo bench -p store-core --bench core -- --test
  cargo bench -p sync-server --bench backends -- --quick
  cargo build --release -p sync-server --bin sync-server; cargo bench -p sync-server --bench load -- --quick
else
  cargo bench -p store-core --bench core
  cargo bench -p sync-server --bench backends
  cargo build --release -p sync-server --bin sync-server; cargo bench -p sync-server --bench load
fi
