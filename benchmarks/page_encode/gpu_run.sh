#!/usr/bin/env bash
# The page-encode benchmark on a GPU (for the `device` tool when a GPU is lent). UNTESTED on a GPU.
# Same models, pages and measurements as the CPU run (encode.py), on cuda: bf16 and fp32 forward,
# batch 4, all three models, peak_rss_mb = peak GPU memory allocated. Results land in $OUT (or ./).
#   bash benchmarks/page_encode/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-.}/page_encode_gpu.json"
nvidia-smi --query-gpu=name,memory.total --format=csv || true
PAGE_ENCODE_DEVICE=cuda uv run --frozen python benchmarks/page_encode/encode.py \
    --models colsmol,colqwen2.5,colpali --pages 8 --rounds 3 --batch 4 --json "$out"
echo "wrote $out"
