"""Disk bytes per page (per table) of mm-retriever indexes, and how fast page images come back.

    uv run --frozen python benchmarks/storage/measure.py --index DIR [--index DIR ...] \
        [--sample 60] [--json OUT.json]

For each index: bytes on disk of every table (after compaction and old-version cleanup, which
``--optimize`` runs first: a fresh build leaves one fragment per document and old versions),
bytes per page, and the latency of ``index.page_images.page`` (what the serve API, the retriever
and explain call) on ``--sample`` random pages: "cold" (the document's source not yet open: read
from LanceDB, opened, page rendered and encoded), "warm" (source open, another page rendered),
"memory" (the same page again, from the in-process cache). Indexes of schema 1 (or
``image_store="encoded"``) read stored bytes: that is the reference.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path

from mm_retriever.index import MultimodalIndex
from mm_retriever.ranking.page_images import PageImages
from mm_retriever.store import PAGES


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    q = sorted(values)
    return {
        "p50_ms": round(1000 * statistics.median(q), 2),
        "p95_ms": round(1000 * q[min(len(q) - 1, int(0.95 * len(q)))], 2),
        "mean_ms": round(1000 * statistics.fmean(q), 2),
    }


def measure(path: Path, sample: int, optimize: bool) -> dict:
    index = MultimodalIndex.open(path)
    if optimize:
        index.optimize(keep_versions_for=timedelta(0))
    n_pages = index.num_pages()
    tables = index.bytes_per_table()
    total = sum(tables.values())
    keys = [
        (r["doc_id"], r["page_index"])
        for r in index.store.query(PAGES, columns=["doc_id", "page_index"]).to_pylist()
    ]
    rng = random.Random(0)
    picks = rng.sample(keys, min(sample, len(keys)))
    by_doc: dict[str, list[int]] = {}
    for doc, page in picks:
        by_doc.setdefault(doc, []).append(page)
    cold, warm, memory, sizes = [], [], [], []
    for doc, pages in by_doc.items():
        images = PageImages(index.store)  # nothing open: the first page of a document is cold
        for i, page in enumerate(pages):
            t = time.perf_counter()
            found = images.page(doc, page)
            (cold if i == 0 else warm).append(time.perf_counter() - t)
            assert found is not None, (doc, page)
            sizes.append(len(found[0]))
            t = time.perf_counter()
            images.page(doc, page)
            memory.append(time.perf_counter() - t)
        images.clear()
    manifest = index.manifest()
    return {
        "index": str(path),
        "schema_version": manifest.get("schema_version"),
        "image_store": manifest["config"]["ingest"].get("image_store", "encoded (schema 1)"),
        "documents": len(index.documents()),
        "pages": n_pages,
        "bytes_total": total,
        "bytes_per_page": round(total / max(n_pages, 1)),
        "bytes_per_page_by_table": {k: round(v / max(n_pages, 1)) for k, v in tables.items()},
        "page_image_bytes_mean": round(statistics.fmean(sizes)) if sizes else 0,
        "page_image_latency": {"cold": _ms(cold), "warm": _ms(warm), "memory": _ms(memory)},
        "sampled_pages": len(picks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", action="append", type=Path, required=True)
    ap.add_argument("--sample", type=int, default=60)
    ap.add_argument("--optimize", action="store_true", help="compact and prune old versions first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = [measure(p, args.sample, args.optimize) for p in args.index]
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
