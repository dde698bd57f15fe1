"""What the filing prior adds to a query at 100k pages, and what reading the fields costs a page.

Query side: a real LanceDB store with ``--pages`` pages of synthetic filings (``--pages-per-doc``
a filing; the sections of the financebench-dev filings repeated: the statement pages, notes,
MD&A), ``FilingPrior.rerank`` over ``--candidates`` fused pages spread over 20 documents (what
the legs return) for every dev question (what runs after the legs), the tables' version check
(which the retriever runs on the leg threads, in parallel with the legs) and the one-time load
of the tables into memory (after each write). Ingest side: ``filing_rows`` over real filings'
page text, seconds a page.

    uv run --frozen python benchmarks/filings/query_cost.py --texts fb_text.json \\
        --dataset ../shared/data/financebench-dev --dataset ../shared/data/mmlongbench-dev
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from mm_retriever.eval.datasets import load_dataset
from mm_retriever.index.filing_fields import filing_rows
from mm_retriever.query.query_expansion import expand_query
from mm_retriever.query.query_text import retrieval_text
from mm_retriever.ranking.filing_prior import FILINGS, PAGE_SECTIONS, FilingPrior
from mm_retriever.store import LanceDBStore
from mm_retriever.store.schema import FILINGS_SCHEMA, PAGE_SECTIONS_SCHEMA
from mm_retriever.types import FusedHit

COMPANIES = ["NIKE, INC.", "ADOBE INC.", "WALMART INC.", "CORNING INCORPORATED", "3M COMPANY"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=Path, required=True, help="JSON doc -> page texts")
    ap.add_argument("--dataset", action="append", required=True)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--pages-per-doc", type=int, default=150)
    ap.add_argument("--candidates", type=int, default=150)
    args = ap.parse_args()
    texts = json.loads(args.texts.read_text())
    t0 = time.perf_counter()
    rows = {d: filing_rows(d, pages) for d, pages in texts.items()}
    n_pages = sum(len(p) for p in texts.values())
    per_page = (time.perf_counter() - t0) / n_pages
    print(f"fields read: {len(texts)} documents, {n_pages} pages, {per_page * 1e3:.3f} ms a page")

    templates = [s for _, s in rows.values()]
    n_docs = args.pages // args.pages_per_doc
    rng = random.Random(0)
    filings, sections = [], []
    for i in range(n_docs):
        doc = f"doc{i:06d}"
        filings.append(
            {
                "doc_id": doc,
                "company": f"{COMPANIES[i % len(COMPANIES)]} {i}",
                "form": "10-K",
                "fiscal_year": 2010 + i % 14,
                "quarter": 0,
                "period_end": "",
                "tickers": [],
            }
        )
        for r in templates[i % len(templates)]:
            if r["page_index"] < args.pages_per_doc:
                sections.append({**r, "doc_id": doc})
    with tempfile.TemporaryDirectory() as tmp:
        store = LanceDBStore(tmp)
        store.add(FILINGS, filings, FILINGS_SCHEMA)
        store.add(PAGE_SECTIONS, sections, PAGE_SECTIONS_SCHEMA)
        prior = FilingPrior()
        t0 = time.perf_counter()
        fields = prior.index(store)
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(100):
            prior.index(store)
        check = (time.perf_counter() - t0) / 100
        print(
            f"{n_docs} filings, {len(sections)} section rows ({args.pages} pages): "
            f"load {load * 1e3:.0f} ms once per write; version check {check * 1e3:.2f} ms a "
            "query (on the leg threads, while the legs run)"
        )
        for name in args.dataset:
            questions = [expand_query(retrieval_text(q.text)) for q in load_dataset(name).queries]
            times = []
            for q in questions:
                docs = rng.sample(range(n_docs), 20)
                hits = [
                    FusedHit(
                        f"doc{docs[j % 20]:06d}", rng.randrange(args.pages_per_doc), rng.random()
                    )
                    for j in range(args.candidates)
                ]
                t0 = time.perf_counter()
                prior.rerank(store, q, hits, fields)
                times.append(time.perf_counter() - t0)
            times.sort()
            p50, p90 = statistics.median(times) * 1e3, times[int(0.9 * len(times))] * 1e3
            print(f"{name}: {len(questions)} questions, rerank p50 {p50:.2f} ms, p90 {p90:.2f} ms")


if __name__ == "__main__":
    main()
