#!/usr/bin/env bash
# Runs the benchmarks. `--quick` runs each once to check they still work.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--quick" ]]; then
  cargo bench -p store-core --bench core -- --test
else
  cargo bench -p store-core --bench core
fi
