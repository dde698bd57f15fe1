"""BM25 engines on the dev set: LanceDB's full-text index vs the in-memory bm25s index, on one
index, for the BM25 leg alone and the hybrid (text + BM25 [+ figure]), both scopes.

    uv run --frozen python benchmarks/text_legs/dev_compare.py --index DEV_INDEX \
        --dataset ../shared/data/mmlongbench-dev --snapshot OUT_DIR --json RESULTS.json

``DEV_INDEX`` is an index of the dev PDFs built by ``mm-retriever eval`` (it may still be
growing: only committed documents are used). Their rows are copied into ``OUT_DIR`` (page images
left out) and the writer's after-write path builds the full-text index there; then every dev
question whose documents are all in the snapshot is answered by both engines on the same rows.
The dense text leg is the same in both runs (the dev set is far below ``ann_min_rows``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def snapshot(src_path: Path, out: Path) -> Any:
    """A new index at ``out`` with the committed documents' rows of ``src_path``."""
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.index.writer import IndexWriter

    src = MultimodalIndex.open(src_path)
    committed = pa.array(sorted(src.store.document_ids()))
    dst = MultimodalIndex.create(out, src.config, overwrite=True)
    with dst.store.writer_lock():
        for name in src.store.doc_tables():
            data = src.store.query(name)
            data = data.filter(pc.is_in(data.column("doc_id"), value_set=committed))
            if "image" in data.schema.names and name == "pages":
                data = data.set_column(
                    data.schema.get_field_index("image"),
                    "image",
                    pa.nulls(data.num_rows, pa.binary()),
                )
            for start in range(0, data.num_rows, 5000):
                dst.store.add(name, data.slice(start, 5000), data.schema)
        IndexWriter(dst.store, dst.config, dst.legs).after_write(1)
    return MultimodalIndex.open(out)


def main() -> None:
    from mm_retriever.eval.datasets import load_local
    from mm_retriever.eval.metrics import evaluate_rankings

    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--snapshot", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--engines", default="bm25s,lancedb")
    ap.add_argument("--reuse", action="store_true", help="use an existing snapshot as it is")
    ap.add_argument(
        "--bm25-weights", default="", help="hybrid with these BM25 weights too, e.g. 0.8,1.2"
    )
    a = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    ds = load_local(a.dataset)
    if a.reuse and a.snapshot.exists():
        from mm_retriever.index import MultimodalIndex

        index = MultimodalIndex.open(a.snapshot)
        with index.store.writer_lock():  # rebuilds the full-text index if its options changed
            index.legs["bm25"].refresh(index.store)
    else:
        index = snapshot(a.index, a.snapshot)
    have = index.store.document_ids()
    name_of = {doc_id: name for name, doc_id in ds.document_ids.items()}
    queries = [
        q
        for q in ds.queries
        if ds.document_ids.get(q.doc or "") in have
        and all(ds.document_ids.get(d) in have for d, _ in ds.qrels.get(q.query_id, {}))
    ]
    qrels = {q.query_id: ds.qrels[q.query_id] for q in queries}
    sources = {q.query_id: q.sources for q in queries}
    leg = index.legs["bm25"]
    results: dict[str, Any] = {
        "documents": len(have),
        "pages": index.num_pages(),
        "queries": len(queries),
        "full_text_index": [str(c.index_type) for c in index.store.table(leg.table).list_indices()],
        "runs": {},
    }
    weights = {s.leg_name: s.weight for s in index.config.legs}
    extra = [float(w) for w in a.bm25_weights.split(",") if w]
    for engine in a.engines.split(","):
        leg.engine = engine
        runs: list[tuple[str, list[str] | None, float | None]] = [
            ("bm25", ["bm25"], None),
            ("hybrid", None, None),
        ]
        runs += [(f"hybrid[bm25={w}]", None, w) for w in extra]
        for pipeline, legs, bm25_weight in runs:
            opts: dict[str, Any] = {"include_images": False, "write_images": False}
            if legs:
                opts["legs"] = legs
            if bm25_weight is not None:
                opts["weights"] = {**weights, "bm25": bm25_weight}
            retriever = index.retriever(**opts)
            for scope in ("within-doc", "corpus"):
                rankings = {}
                t0 = time.perf_counter()
                for q in queries:
                    filters = {"doc_id": ds.document_ids[q.doc]} if scope == "within-doc" else None
                    pages = retriever.retrieve(q.text, k=10, filters=filters)
                    rankings[q.query_id] = [(name_of[p.doc_id], p.page_index) for p in pages]
                seconds = time.perf_counter() - t0
                scores = evaluate_rankings(rankings, qrels, sources)
                scores.pop("per_query")
                scores["seconds_per_query"] = round(seconds / max(1, len(queries)), 4)
                results["runs"][f"{engine}/{pipeline}/{scope}"] = scores
                print(
                    f"{engine:8s} {pipeline:16s} {scope:10s} nDCG@5 {scores['ndcg@5']:.4f} "
                    f"R@5 {scores['recall@5']:.4f} MRR@10 {scores['mrr@10']:.4f}",
                    flush=True,
                )
    text = json.dumps(results, indent=2)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
