"""Cost of following writers: query latency with ``read_consistency_interval`` 0 s (the local
default: every read checks for a newer table version) against None (never checks).

    uv run --frozen python benchmarks/reliability/consistency_latency.py

BM25 leg, 12 small generated documents, 100 queries per run, two runs of each, median ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from reliability_harness import bm25_config, make_docs

from mm_retriever.index import MultimodalIndex


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = make_docs(root / "docs", 12, seed=1)
        MultimodalIndex.create(root / "idx", bm25_config()).add(docs)
        res: dict[str, list[float]] = {}
        for label, interval in (("interval=0 s", "default"), ("interval=None", None)) * 2:
            index = MultimodalIndex.open(root / "idx", read_consistency_interval=interval)
            retriever = index.retriever(write_images=False)
            retriever.retrieve("Document fact counted", k=5)
            times = []
            for i in range(100):
                t0 = time.perf_counter()
                retriever.retrieve(f"Document fact counted heron {i}", k=5)
                times.append(time.perf_counter() - t0)
            res.setdefault(label, []).append(statistics.median(times) * 1000)
    for label, values in res.items():
        print(f"{label}: median ms per query, two runs: {[round(v, 2) for v in values]}")


if __name__ == "__main__":
    main()
