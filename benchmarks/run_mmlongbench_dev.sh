#!/usr/bin/env bash
# Score every page-less pipeline that runs here on ../shared/data/mmlongbench-dev, both scopes,
# and write the results next to this script (JSON per scope, report.md, PNG plots, run.txt).
#
#   bash benchmarks/run_mmlongbench_dev.sh                  # everything
#   PIPELINES="hybrid bm25 text" bash benchmarks/run_mmlongbench_dev.sh   # a subset
#
# Indexes are kept under $WORKDIR and reused when documents and settings are unchanged, so a
# re-run only queries. OCR pipelines use tesseract (its page cache is shared with ingestion:
# $MM_RETRIEVER_CACHE/ocr/tesseract-150dpi); OCR seconds per page are timed on uncached pages.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/mmlongbench-dev}"
OUT="${OUT:-benchmarks/results/mmlongbench-dev}"
WORKDIR="${WORKDIR:-${MM_RETRIEVER_CACHE:-$HOME/.cache/mm-retriever}/eval}"
PIPELINES="${PIPELINES:-hybrid text bm25 layer-bm25 ocr-bm25 ocr-dense llamaindex langchain}"
OCR_ENGINE="${OCR_ENGINE:-tesseract}"
EXTRA_ARGS="${EXTRA_ARGS:-}"

args=()
for p in $PIPELINES; do args+=(--pipeline "$p"); done
mkdir -p "$OUT"
cmd=(uv run --extra peers mm-retriever eval --dataset "$DATA" "${args[@]}"
     --scope within-doc --scope corpus --ocr-engine "$OCR_ENGINE" --workdir "$WORKDIR"
     --json "$OUT/results.json" --report "$OUT")
# shellcheck disable=SC2206
cmd+=($EXTRA_ARGS)
{
  echo "command: ${cmd[*]}"
  echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(uname -sm), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$OUT/run.txt"
"${cmd[@]}" | tee -a "$OUT/run.txt"
