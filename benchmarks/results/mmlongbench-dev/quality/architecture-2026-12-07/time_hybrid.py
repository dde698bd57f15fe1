"""Per-query wall time of HybridRetriever.retrieve over the dev questions on an existing index.

Usage: python time_hybrid.py INDEX QUERIES.jsonl OUT.json
Runs with whichever mm_retriever the interpreter imports (main's or the arch branch's). The
retriever is set up as `mm-retriever eval` sets up the hybrid pipeline (no images), both scopes.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import mm_retriever
from mm_retriever.index import MultimodalIndex

index_dir, queries_file, out = sys.argv[1:4]
index = MultimodalIndex.open(index_dir)
retriever = index.retriever(include_images=False, write_images=False)
by_name = {Path(d["source"]).name: d["doc_id"] for d in index.documents()}
queries = [json.loads(line) for line in Path(queries_file).read_text().splitlines() if line.strip()]
for q in queries[:10]:  # warm-up: models, snapshots, OS page cache
    retriever.retrieve(q["query"], k=5)
    retriever.retrieve(q["query"], k=5, filters={"doc_id": by_name[q["doc_id"]]})
times = {"corpus": [], "within-doc": []}
for q in queries:
    t0 = time.perf_counter()
    retriever.retrieve(q["query"], k=5)
    times["corpus"].append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    retriever.retrieve(q["query"], k=5, filters={"doc_id": by_name[q["doc_id"]]})
    times["within-doc"].append(time.perf_counter() - t0)
summary = {
    "code": mm_retriever.__file__,
    "n": len(queries),
    **{f"p50_ms_{s}": 1000 * statistics.median(t) for s, t in times.items()},
    **{f"p95_ms_{s}": 1000 * sorted(t)[int(0.95 * len(t)) - 1] for s, t in times.items()},
}
Path(out).write_text(json.dumps({"summary": summary, "times": times}, indent=1))
print(json.dumps(summary))
