#!/usr/bin/env bash
# Page leg at scale: kernel table, scale table (synthetic corpus in LanceDB), dev-proxy quality.
#   bash benchmarks/late_interaction/run.sh [--quick] [--json FILE] [--sizes 10000,100000] [--tokens 256]
# --quick: kernel table + 10k pages (under 10 minutes on a 2-core box). Full: 10k and 100k pages.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
exec uv run --frozen python benchmarks/late_interaction/bench.py "$@"
