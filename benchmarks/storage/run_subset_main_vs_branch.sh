#!/bin/bash
# As run on 2026-11-29: $side is a detached checkout (`git worktree add --detach DIR COMMIT`) of
# main f4f2974 (base) and of this branch at 4848cff (new), both run with this repository's venv
# (PYTHONPATH puts the checkout first). Results: benchmarks/storage/results/.
# Baseline (main f4f2974) and this branch, same settings, 10 dev docs, rapidocr, shared OCR cache.
export MM_RETRIEVER_CACHE=/work/scratch/storage/cache
for side in base new; do
  cd /work/scratch/storage/$side
  echo "== $side $(git rev-parse --short HEAD) start $(date -u)"
  PYTHONPATH=/work/scratch/storage/$side /usr/bin/time -f "%e s wall, %M KB maxrss" nice -n 5 /work/wt-storage/.venv/bin/python -m mm_retriever.cli eval --dataset /work/shared/data/mmlongbench-dev -p hybrid -p bm25 -p text --scope within-doc --scope corpus --ocr-engine rapidocr --limit-docs 10 --workdir /work/scratch/storage/eval-$side --json /work/scratch/storage/results-$side/results.json -q 2>&1 | grep -v "Loading weights\|skipped: model\|is not available here\|unavailable, using"
  echo "== $side end $(date -u)"
done
