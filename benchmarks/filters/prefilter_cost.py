"""Where a filtered leg's time goes: LanceDB calls with and without the 50 % filter's
``doc_id IN (...)`` prefilter (1,000 ids), on the index ``bench.py build`` wrote.

    uv run --frozen python benchmarks/filters/prefilter_cost.py --index OUT
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mm_retriever.index import MultimodalIndex
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause


def _ms(f, n: int = 7) -> float:
    f()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", required=True)
    args = parser.parse_args()
    index = MultimodalIndex.open(args.index)
    half = sorted(d["doc_id"] for d in index.documents() if d["metadata"]["year"] >= 2020)
    where = where_clause({"doc_id": half}, PAGE_COLUMNS)
    text, bm25 = index.store.table("leg_text"), index.store.table("leg_bm25")
    q = np.random.default_rng(0).standard_normal(384).astype(np.float32)

    def ann(w: str | None):
        s = text.search(q).distance_type("cosine").nprobes(32).refine_factor(5)
        return (s.where(w, prefilter=True) if w else s).limit(40).to_arrow()

    def fts(w: str | None):
        s = bm25.search("revenue growth in the region", query_type="fts")
        return (s.where(w, prefilter=True) if w else s).limit(40).to_arrow()

    out = {
        "documents_allowed": len(half),
        "text: count_rows(where) ms": _ms(lambda: text.count_rows(where)),
        "text: ANN search ms, no filter": _ms(lambda: ann(None)),
        "text: ANN search ms, prefilter": _ms(lambda: ann(where)),
        "bm25: full-text search ms, no filter": _ms(lambda: fts(None)),
        "bm25: full-text search ms, prefilter": _ms(lambda: fts(where)),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
