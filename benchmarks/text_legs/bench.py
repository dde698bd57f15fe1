"""Text legs at scale: open-to-first-answer, hybrid query latency and dense-leg ANN recall on a
synthetic index of N chunks (text sampled from the dev corpus, vectors derived from its real
MiniLM chunk vectors), next to the reference (the in-memory bm25s engine, the flat scan).

    uv run --frozen python benchmarks/text_legs/bench.py build --dev-index DEV --index OUT \
        --chunks N
    uv run --frozen python benchmarks/text_legs/bench.py measure --index OUT --json RESULTS

``build`` writes a real MultimodalIndex (text + BM25 legs, MiniLM) whose rows are synthetic:
each chunk joins the first half of one dev chunk's words to the second half of another's, and
its vector is the normalised sum of those two chunks' real MiniLM vectors plus a little noise;
pages hold the dev set's chunks-per-page and BM25 indexes whole pages, as the default index
does. The writer's own after-write path then builds the indexes (timed). ``measure`` times
fresh processes (open + MiniLM load + first hybrid answer), every dev question once through
the hybrid retriever (query encoding included), and the dense leg's recall@10 against the flat
scan for a grid of nprobes/refine_factor.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEV_QUERIES = Path(__file__).resolve().parents[2] / "../shared/data/mmlongbench-dev/queries.jsonl"
PAGES_PER_DOC = 20
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 20_000


def _config(**text_options: Any) -> Any:
    from mm_retriever.config import IndexConfig, LegSpec

    # the id, not a folder: the bundled MiniLM is found by it wherever the index is opened
    enc = {"name": "sentence-transformers", "options": {"model": MINILM}}
    return IndexConfig(
        legs=[
            LegSpec(name="text", weight=0.75, options={"encoder": enc, **text_options}),
            LegSpec(name="bm25"),
        ],
        device="cpu",
    )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------- build
def build(dev_index: Path, out: Path, n_chunks: int, seed: int = 0) -> dict[str, Any]:
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.index.writer import IndexWriter
    from mm_retriever.ranking.document_prior import backfill_document_texts
    from mm_retriever.store.schema import DOCUMENTS_SCHEMA, PAGES_SCHEMA, now_iso

    dev = MultimodalIndex.open(dev_index)
    chunks = dev.store.query("leg_text", None, ["doc_id", "page_index", "text", "vector"])
    texts = [t.split() for t in chunks.column("text").to_pylist()]
    vectors = np.stack(chunks.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    pages = {
        (d, p)
        for d, p in zip(
            *(chunks.column(c).to_pylist() for c in ("doc_id", "page_index")), strict=True
        )
    }
    per_page = max(1, round(len(texts) / len(pages)))
    rng = np.random.default_rng(seed)

    index = MultimodalIndex.create(out, _config(), overwrite=True)
    store = index.store
    t0 = time.perf_counter()
    written = 0
    seen_docs: set[str] = set()
    with store.writer_lock():
        while written < n_chunks:
            n = min(BATCH, n_chunks - written)
            a, b = rng.integers(0, len(texts), n), rng.integers(0, len(texts), n)
            vec = vectors[a] + vectors[b] + 0.05 * rng.standard_normal((n, vectors.shape[1]))
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            text_rows, page_text = [], {}
            for j in range(n):
                g = written + j
                page, chunk = divmod(g, per_page)
                doc, page_index = divmod(page, PAGES_PER_DOC)
                ta, tb = texts[a[j]], texts[b[j]]
                text = " ".join(ta[: len(ta) // 2] + tb[len(tb) // 2 :])
                text_rows.append(
                    {
                        "doc_id": f"syn{doc:06d}",
                        "page_index": page_index,
                        "chunk_index": chunk,
                        "text": text,
                        "vector": vec[j].astype(np.float32),
                    }
                )
                page_text.setdefault((f"syn{doc:06d}", page_index), []).append(text)
            store.add("leg_text", text_rows, index.legs["text"].schema())
            store.add(
                "leg_bm25",
                [
                    {"doc_id": d, "page_index": p, "chunk_index": -1, "text": " ".join(t)}
                    for (d, p), t in page_text.items()
                ],
                index.legs["bm25"].schema(),
            )
            store.add(
                "pages",
                [
                    {
                        "doc_id": d,
                        "page_index": p,
                        "width": 612.0,
                        "height": 792.0,
                        "text": " ".join(t),
                        "layer_text": " ".join(t),
                        "ocr_text": "",
                        "text_source": "layer",
                        "image": None,
                        "image_mime": "image/jpeg",
                    }
                    for (d, p), t in page_text.items()
                ],
                PAGES_SCHEMA,
            )
            docs = sorted({d for d, _ in page_text} - seen_docs)
            seen_docs.update(docs)
            store.add(
                "documents",
                [
                    {
                        "doc_id": d,
                        "source": f"{d}.pdf",
                        "title": d,
                        "n_pages": PAGES_PER_DOC,
                        "added_at": now_iso(),
                        "metadata": "{}",
                    }
                    for d in docs
                ],
                DOCUMENTS_SCHEMA,
            )
            written += n
            print(f"{written} chunks written", file=sys.stderr, flush=True)
        # the document prior's texts, as the writer keeps them (one row a document)
        backfill_document_texts(store, batch=256)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        IndexWriter(store, index.config, index.legs).after_write(16)  # the writer's own path
        t_index = time.perf_counter() - t0
    return {
        "chunks": n_chunks,
        "pages": store.count("leg_bm25"),
        "documents": store.count("documents"),
        "chunks_per_page": per_page,
        "dev_chunks_sampled_from": len(texts),
        "write_seconds": round(t_write, 1),
        "after_write_seconds": round(t_index, 1),
        "indexes": {
            t: [str(c.index_type) for c in store.table(t).list_indices()]
            for t in ("leg_text", "leg_bm25", "document_text")
        },
        "bytes_per_table": store.table_bytes(),
        "peak_rss_mib": round(_peak_rss_mib()),
    }


# ----------------------------------------------------------------------------------- measure
def first_answer(index_path: str, query: str, engine: str) -> dict[str, Any]:
    """In a fresh process: open, first hybrid answer (query encoder load included); then a
    second. Threads: OMP_NUM_THREADS as set by the caller. ``torch_loaded`` says whether the
    process had to import torch (it does not when the text model's ONNX export exists)."""
    t0 = time.perf_counter()
    import lancedb  # noqa: F401  (imported by the open otherwise: timed apart, a fixed cost)

    from mm_retriever.index import MultimodalIndex

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = MultimodalIndex.open(index_path)
    if engine != "lancedb":
        index.legs["bm25"].engine = engine
    retriever = index.retriever(include_images=False, write_images=False)
    t_open = time.perf_counter() - t0
    t1 = time.perf_counter()
    pages = retriever.retrieve(query, k=5)
    t_first = time.perf_counter() - t1
    t2 = time.perf_counter()
    retriever.retrieve(query + " total", k=5)
    t_second = time.perf_counter() - t2
    return {
        "engine": engine,
        "import_s": round(t_import, 3),
        "open_s": round(t_open, 3),
        "first_query_s": round(t_first, 3),
        "open_to_first_answer_s": round(t_open + t_first, 3),
        "process_to_first_answer_s": round(t_import + t_open + t_first, 3),
        "second_query_s": round(t_second, 3),
        "hits": len(pages),
        "torch_loaded": "torch" in sys.modules,
        "query_onnx": os.environ.get("MM_RETRIEVER_QUERY_ONNX", "1"),
        "peak_rss_mib": round(_peak_rss_mib()),
    }


def _fresh(index: str, query: str, engine: str, query_onnx: bool = True) -> dict[str, Any]:
    env = {**os.environ, "MM_RETRIEVER_QUERY_ONNX": "1" if query_onnx else "0"}
    out = subprocess.run(
        [sys.executable, __file__, "first", "--index", index, "--query", query, "--engine", engine],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare_query_export(index_path: str) -> dict[str, Any]:
    """Load the text model for documents once, as ingestion does, which exports it to ONNX for
    later processes' queries (a no-op when the export is in the cache already)."""
    from mm_retriever.encoders.onnx_query import onnx_path
    from mm_retriever.index import MultimodalIndex

    encoder = MultimodalIndex.open(index_path).legs["text"].encoder
    target = onnx_path(encoder.path)
    existed = target.is_file()
    t0 = time.perf_counter()
    encoder.encode_document(["warm up"])
    seconds = round(time.perf_counter() - t0, 1)
    return {"export": str(target), "existed": existed, "seconds": seconds}


def _queries() -> list[str]:
    return [json.loads(line)["query"] for line in DEV_QUERIES.read_text().splitlines() if line]


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1)


def recall_grid(index: Any, queries: list[str], grid: list[tuple[int, int]]) -> list[dict]:
    leg = index.legs["text"]
    tbl = index.store.table(leg.table)
    qvecs = leg.encoder.encode_query(queries)

    def top(q: np.ndarray, nprobes: int | None, refine: int | None) -> tuple[list[int], float]:
        s = tbl.search(q, vector_column_name="vector").distance_type("cosine")
        s = s.bypass_vector_index() if nprobes is None else s.nprobes(nprobes)
        if refine:
            s = s.refine_factor(refine)
        t0 = time.perf_counter()
        ids = s.with_row_id(True).select(["_rowid"]).limit(10).to_arrow().column("_rowid")
        return ids.to_pylist(), time.perf_counter() - t0

    flat = [top(q, None, None) for q in qvecs]
    print("flat done", file=sys.stderr, flush=True)
    out = [{"search": "flat", "recall@10": 1.0, "p50_ms": _pct([t for _, t in flat], 50)}]
    for nprobes, refine in grid:
        res = [top(q, nprobes, refine) for q in qvecs]
        rec = [len(set(a) & set(f)) / 10 for (a, _), (f, _) in zip(res, flat, strict=True)]
        out.append(
            {
                "search": "ann",
                "nprobes": nprobes,
                "refine_factor": refine,
                "recall@10": round(float(np.mean(rec)), 4),
                "p50_ms": _pct([t for _, t in res], 50),
            }
        )
        print(out[-1], file=sys.stderr, flush=True)
    return out


def latency_only(index_path: str, n_queries: int) -> dict[str, Any]:
    """Rebuild the dense leg's ANN index with the leg's current defaults; time hybrid queries."""
    import torch

    from mm_retriever.index import MultimodalIndex
    from mm_retriever.store.table_indexes import find_index

    torch.set_num_threads(1)
    index = MultimodalIndex.open(index_path)
    leg = index.legs["text"]
    for name, default in (("ann_index", "IVF_SQ"), ("nprobes", 32), ("refine_factor", 5)):
        setattr(leg, name, default)  # the index was built when IVF_PQ was the default
    tbl = index.store.table(leg.table)
    with index.store.writer_lock():
        old = find_index(tbl, "vector", "vector")
        if old is not None and str(old.index_type) != "IvfSq":
            tbl.drop_index(old.name)
        t0 = time.perf_counter()
        leg.refresh(index.store)
        rebuild = time.perf_counter() - t0
    retriever = index.retriever(include_images=False, write_images=False)
    retriever.retrieve("warm up", k=5)
    times = []
    for q in _queries()[:n_queries]:
        t0 = time.perf_counter()
        retriever.retrieve(q, k=5)
        times.append(time.perf_counter() - t0)
    return {
        "text_leg": {k: leg.config()[k] for k in ("ann_index", "nprobes", "refine_factor")},
        "index_rebuild_s": round(rebuild, 1),
        "hybrid corpus (query encoding included)": {
            "p50_ms": _pct(times, 50),
            "p90_ms": _pct(times, 90),
        },
        "queries": len(times),
    }


#: the retrieval options before issue 10's question handling and document prior
PREVIOUS_DEFAULTS = {"expand_query": False, "pin_references": False, "document_prior": 0}


def compare_defaults(index_path: str, n_queries: int) -> dict[str, Any]:
    """Hybrid corpus-wide query time with today's retrieval defaults against the previous ones
    (``PREVIOUS_DEFAULTS``), interleaved query by query in one process on the same index."""
    import torch

    from mm_retriever.index import MultimodalIndex
    from mm_retriever.legs.base import _query_cache

    torch.set_num_threads(1)
    index = MultimodalIndex.open(index_path)
    runs = {
        "defaults": index.retriever(include_images=False, write_images=False),
        "previous defaults": index.retriever(
            include_images=False, write_images=False, **PREVIOUS_DEFAULTS
        ),
    }
    for retriever in runs.values():
        retriever.retrieve("warm up", k=5)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for q in _queries()[:n_queries]:
        for name, retriever in runs.items():
            _query_cache.clear()  # both pay the query encoding (the legs are shared)
            t0 = time.perf_counter()
            retriever.retrieve(q, k=5)
            times[name].append(time.perf_counter() - t0)
    return {
        "hybrid corpus (query encoding included)": {
            name: {"p50_ms": _pct(t, 50), "p90_ms": _pct(t, 90)} for name, t in times.items()
        },
        "previous_defaults": PREVIOUS_DEFAULTS,
        "queries": n_queries,
        "pages": index.num_pages(),
        "documents": len(index),
    }


def measure(
    index_path: str,
    grid: list[tuple[int, int]],
    n_queries: int,
    out: Path | None,
    *,
    bm25s_reference: bool = True,
    recall_queries: int | None = None,
) -> dict[str, Any]:
    """Threads: set OMP_NUM_THREADS=1 on the command line (the ONNX query session uses one)."""
    from mm_retriever.index import MultimodalIndex

    queries = _queries()[:n_queries]
    export = prepare_query_export(index_path)
    first: dict[str, Any] = {
        "lancedb full-text index, ONNX query encoder (default)": [
            _fresh(index_path, queries[i], "lancedb") for i in range(3)
        ],
        "lancedb full-text index, torch query encoder (MM_RETRIEVER_QUERY_ONNX=0)": [
            _fresh(index_path, queries[0], "lancedb", query_onnx=False)
        ],
    }
    if bm25s_reference:
        first["bm25s (in-memory reference)"] = [_fresh(index_path, queries[0], "bm25s")]
    index = MultimodalIndex.open(index_path)
    retriever = index.retriever(include_images=False, write_images=False)
    retriever.retrieve("warm up", k=5)
    docs = [d["doc_id"] for d in index.store.query("documents", None, ["doc_id"]).to_pylist()]
    rng = np.random.default_rng(1)
    timings: dict[str, list[float]] = {
        "corpus": [],
        "within-doc": [],
        "text leg": [],
        "bm25 leg": [],
    }
    from mm_retriever.protocols import Query

    for q in queries:  # every question once: its encoding is never cached
        t0 = time.perf_counter()
        retriever.retrieve(q, k=5)
        timings["corpus"].append(time.perf_counter() - t0)
        doc = docs[int(rng.integers(len(docs)))]
        t0 = time.perf_counter()
        retriever.retrieve(q + " ?", k=5, filters={"doc_id": doc})
        timings["within-doc"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.legs["text"].retrieve(index.store, Query(q), k=50)  # encoding cached by now
        timings["text leg"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        index.legs["bm25"].retrieve(index.store, Query(q), k=50)
        timings["bm25 leg"].append(time.perf_counter() - t0)
    print("latency done", file=sys.stderr, flush=True)
    latency = {
        name: {
            "p50_ms": _pct(v, 50),
            "p90_ms": _pct(v, 90),
            "mean_ms": round(statistics.mean(v) * 1000, 1),
        }
        for name, v in timings.items()
    }
    leg = index.legs["text"]
    result = {
        "index": index_path,
        "chunks": index.store.count("leg_text"),
        "pages": index.store.count("leg_bm25"),
        "text_leg": {
            k: leg.config()[k] for k in ("ann_min_rows", "ann_index", "nprobes", "refine_factor")
        },
        "ann_index_present": leg.has_ann_index(index.store),
        "query_export": export,
        "query_encoder_in_latency_runs": "onnx" if leg.encoder._query_encoder() else "torch",
        "open_to_first_answer": first,
        "hybrid_latency (text+bm25, k=5, query encoding included for corpus/within-doc)": latency,
        "queries": len(queries),
    }
    if out is not None:  # what is measured so far
        out.write_text(json.dumps(result, indent=2) + "\n")
    result["text_leg_recall_vs_flat"] = recall_grid(index, queries[:recall_queries], grid)
    result["peak_rss_mib"] = round(_peak_rss_mib())
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["build", "measure", "first", "recall", "latency", "defaults"])
    p.add_argument("--dev-index")
    p.add_argument("--index", required=True)
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--json")
    p.add_argument("--query", default="")
    p.add_argument("--engine", default="lancedb")
    p.add_argument("--grid", default="16:5,32:10,64:10")
    p.add_argument("--queries", type=int, default=200, help="dev questions to time")
    p.add_argument("--recall-queries", type=int, default=None, help="of those, for recall")
    p.add_argument("--no-bm25s", action="store_true", help="skip the bm25s first-answer run")
    a = p.parse_args()
    if a.mode == "first":
        print(json.dumps(first_answer(a.index, a.query, a.engine)))
        return
    if a.mode == "latency":  # the ANN index rebuilt with the current defaults, then latency only
        result = latency_only(a.index, a.queries)
    elif a.mode == "defaults":  # today's retrieval defaults against the previous ones
        result = compare_defaults(a.index, a.queries)
    elif a.mode == "recall":  # the recall grid alone (on an index measured before)
        from mm_retriever.index import MultimodalIndex

        grid = [tuple(int(x) for x in g.split(":")) for g in a.grid.split(",")]
        index = MultimodalIndex.open(a.index)
        result = {"text_leg_recall_vs_flat": recall_grid(index, _queries()[: a.queries], grid)}
    elif a.mode == "build":
        result = build(Path(a.dev_index), Path(a.index), a.chunks)
    else:
        grid = [tuple(int(x) for x in g.split(":")) for g in a.grid.split(",")]
        out = Path(a.json) if a.json else None
        result = measure(
            a.index,
            grid,  # type: ignore[arg-type]
            a.queries,
            out,
            bm25s_reference=not a.no_bm25s,
            recall_queries=a.recall_queries,
        )
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
