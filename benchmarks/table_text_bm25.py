"""Does table text (mm_retriever.ingest.tables) help the BM25 leg? Measured without re-ingesting.

Takes the page text of an existing dev index (built by ``mm-retriever eval``), appends the
header-propagated table text cached by ``benchmarks/extract_tables.py`` to the pages it covers
(exactly what ``IngestConfig(tables=True)`` appends), builds the BM25 leg over both versions in
temporary LanceDB stores, and scores the dev queries (prepared as the retriever does: answer
instructions dropped, financial metrics expanded) within-doc and corpus-wide, on the filings
slice and on all queries, with a paired randomisation test.

    uv run --frozen python benchmarks/table_text_bm25.py --dataset ../shared/data/mmlongbench-dev \
        --index WORKDIR/indexes/mmlongbench-dev-KEY --tables TABLES.json

Only the index's committed documents (and their queries) take part.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.eval.significance import paired_test
from mm_retriever.eval.slices import FILINGS, query_slices
from mm_retriever.index import MultimodalIndex
from mm_retriever.legs.bm25 import BM25Retriever
from mm_retriever.protocols import Query
from mm_retriever.query.query_expansion import expand_query
from mm_retriever.query.query_text import retrieval_text
from mm_retriever.store import DOCUMENTS, PAGES, LanceDBStore
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause


def restrict(dataset, names: set[str]):
    """The data set less the documents (and their queries) not in ``names``."""
    from mm_retriever.eval.datasets import EvalDataset

    queries = [
        q
        for q in dataset.queries
        if q.doc in names and all(d in names for d, _ in dataset.qrels[q.query_id])
    ]
    files = [f for f in dataset.files if f.name in names]
    return EvalDataset(
        dataset.name, files, queries, {q.query_id: dataset.qrels[q.query_id] for q in queries}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--index", type=Path, required=True, help="an index built by eval")
    ap.add_argument("--tables", type=Path, required=True)
    args = ap.parse_args()
    dataset = load_dataset(args.dataset)
    store = MultimodalIndex.open(args.index).store
    committed = {r["doc_id"] for r in store.query(DOCUMENTS, None, ["doc_id"]).to_pylist()}
    ids = {n: i for n, i in dataset.document_ids.items() if i in committed}
    names = {i: n for n, i in ids.items()}
    dataset = restrict(dataset, set(ids))
    pages = store.query(PAGES, None, ["doc_id", "page_index", "text"]).to_pylist()
    pages = [p for p in pages if p["doc_id"] in committed]
    cache = json.loads(args.tables.read_text())
    cache["tables"] = {n: t for n, t in cache["tables"].items() if n in ids}
    extra = {
        (ids[name], int(i)): text
        for name, by_page in cache["tables"].items()
        for i, text in by_page.items()
    }
    covered = {ids[name] for name in cache["tables"]}
    print(
        f"table text on {len(extra)} of {sum(p['doc_id'] in covered for p in pages)} pages of "
        f"{len(covered)} documents; find_tables {cache['seconds'] / cache['pages']:.2f} s/page",
        flush=True,
    )
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    slices = query_slices(dataset.queries)
    in_covered = {q.query_id for q in dataset.queries if ids.get(q.doc or "") in covered}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("page text", "page text + tables"):
            leg = BM25Retriever()
            st = LanceDBStore(Path(tmp) / variant.replace(" ", "_"))
            rows = []
            for p in pages:
                text = p["text"] or ""
                if variant.endswith("tables") and (p["doc_id"], p["page_index"]) in extra:
                    text = f"{text}\n\n{extra[(p['doc_id'], p['page_index'])]}"
                if text.strip():
                    rows.append(
                        {
                            "doc_id": p["doc_id"],
                            "page_index": p["page_index"],
                            "chunk_index": -1,
                            "text": text,
                        }
                    )
            st.add(leg.table, rows, leg.schema())
            for scope in ("within-doc", "corpus"):
                ranked = {}
                for q in dataset.queries:
                    where = None
                    if scope == "within-doc":
                        where = where_clause({"doc_id": ids[q.doc]}, PAGE_COLUMNS)
                    text = retrieval_text(q.text)
                    hits = leg.retrieve(st, Query(expand_query(text)), 10, where)
                    ranked[q.query_id] = [(names[h.doc_id], h.page_index) for h in hits]
                results[(variant, scope)] = evaluate_rankings(ranked, qrels, slices=slices)
    for scope in ("within-doc", "corpus"):
        a = results[("page text + tables", scope)]
        b = results[("page text", scope)]
        for label, qids in (
            (FILINGS, [q for q, s in slices.items() if FILINGS in s]),
            ("documents with table text", sorted(in_covered)),
            ("all queries", sorted(qrels)),
        ):
            c = paired_test(
                [a["per_query"][q]["ndcg@5"] for q in qids],
                [b["per_query"][q]["ndcg@5"] for q in qids],
                pipeline="tables",
                reference_name="no tables",
            )
            print(
                f"BM25 {scope:10s} {label:26s} n={c.n:3d}: with tables {c.mean:.3f}, without "
                f"{c.reference_mean:.3f}, diff {c.diff:+.3f} [95% CI {c.ci_low:+.3f}, "
                f"{c.ci_high:+.3f}], p(rand) {c.p_randomization:.3g}: {c.verdict()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
