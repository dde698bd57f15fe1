#!/usr/bin/env bash
# The filing prior on one dev set, from an existing default index (read only):
#   1. every leg's rankings and the document prior's scores, cached (benchmarks/tune_fusion.py);
#   2. the filing fields and page sections read from the index's page text, the grid of filing
#      prior settings with paired tests against today's default, the hybrid against each leg.
# usage: benchmarks/filings/run.sh DATASET INDEX OUT [CHECK]   (CHECK: "weight,section,top")
set -euo pipefail
DATASET=$1
INDEX=$2
OUT=$3
CHECK=${4:-3,5,2}
mkdir -p "$OUT"
CACHE=${CACHE:-$OUT/legs.pkl}
if [ ! -f "$CACHE" ]; then
  nice -n 10 uv run --frozen python benchmarks/tune_fusion.py --dataset "$DATASET" \
    --index "$INDEX" --cache "$CACHE" --out "$OUT/fusion_grid.tsv" > "$OUT/tune_fusion.log" 2>&1
fi
nice -n 10 uv run --frozen python benchmarks/filings/tune_filing_prior.py --dataset "$DATASET" \
  --cache "$CACHE" --index "$INDEX" --check "$CHECK" --out "$OUT/filing_prior_grid.tsv" \
  2>&1 | tee "$OUT/filing_prior.log"
