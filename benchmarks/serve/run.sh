#!/usr/bin/env bash
# The serve load benchmark, three ways in one go (same machine, same minutes):
# 16 clients while uploads are indexed (the target case), 16 clients without writes, 1 client.
set -euo pipefail
cd "$(dirname "$0")/../.."
INDEX=${INDEX:-/tmp/mm-retriever-load/index}
OUT=benchmarks/serve/results
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
uv run --extra serve python benchmarks/serve/load.py --index "$INDEX" --clients 16 --requests 2000 --out $OUT/load-16-clients-uploading.json
uv run --extra serve python benchmarks/serve/load.py --index "$INDEX" --clients 16 --requests 1000 --no-upload --out $OUT/load-16-clients.json
uv run --extra serve python benchmarks/serve/load.py --index "$INDEX" --clients 1 --requests 200 --no-upload --out $OUT/load-1-client.json
