#!/bin/bash
# hybrid query wall time, main (ef0ced2, its own venv) and arch (snapshot, wt-arch venv) alternating
IDX=/work/evalwork/indexes/mmlongbench-dev-0cfe301c2937b4b7
Q=/work/shared/data/mmlongbench-dev/queries.jsonl
export MM_RETRIEVER_CACHE=/work/mmcache
for round in 3 4; do
  (cd /tmp && PYTHONPATH= nice -n 5 /tmp/arch/base/.venv/bin/python /tmp/arch/time_hybrid.py $IDX $Q /tmp/arch/time-main-$round.json)
  (cd /tmp && PYTHONPATH=/tmp/arch/evalsnap nice -n 5 /work/wt-arch/.venv/bin/python /tmp/arch/time_hybrid.py $IDX $Q /tmp/arch/time-arch-$round.json)
done
echo done
