"""Scale benchmark of the page-leg representations on a synthetic corpus stored in LanceDB.

What is synthetic (all of it, since no ColPali weights are here): pages are ``tokens`` unit
vectors of 128-d drawn around ``topics`` topic centres, each topic a set of 32 prototype vectors
(a page samples prototypes of one main topic, 20 % of a second topic, plus Gaussian noise of norm
0.6); 25 % of pages are near-duplicates (an earlier page plus small noise), like templated slides or
repeated report pages. Queries are 20 vectors: copies of tokens of one page plus noise of norm 0.8.
Ground truth
is exact MaxSim over the stored (float16) vectors, computed in one streaming pass.

Per size and representation: p50/p95 latency of one query (after the index is built), recall@10
against exact, RAM bytes a page of the in-RAM structures (their own count; the process's RSS
growth over the build is reported next to it), disk bytes a page of the Lance table, build time
(first stage from a streaming read of the table), and for two-stage indexes the saved first
stage: its bytes a page, the save time, and load + first query as the next process would do it.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from mm_retriever.legs.page import PageImageRetriever
from mm_retriever.multivector import ExactIndex, TwoStageIndex, top_k
from mm_retriever.multivector.kernel import maxsim_scores_batch
from mm_retriever.store.arrow import multivector_array, multivector_type

DIM = 128
QUERY_TOKENS = 20
TOPICS = 2000
PROTOTYPES = 32
BATCH = 2000
# Noise norms (relative to unit prototypes): page tokens, near-duplicate copies, query tokens.
PAGE_NOISE, DUP_NOISE, QUERY_NOISE = 0.6, 0.15, 0.8


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Corpus:
    """Deterministic clustered, near-duplicate-rich pages, generated batch by batch."""

    def __init__(self, tokens: int, seed: int = 0) -> None:
        self.tokens = tokens
        rng = np.random.default_rng(seed)
        self.protos = _unit(rng.standard_normal((TOPICS, PROTOTYPES, DIM)).astype(np.float32))
        self.seed = seed

    def batch(self, start: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, start])
        main = rng.integers(TOPICS, size=n)
        second = rng.integers(TOPICS, size=n)
        pick = rng.integers(PROTOTYPES, size=(n, self.tokens))
        topic = np.where(rng.random((n, self.tokens)) < 0.8, main[:, None], second[:, None])
        pages = self.protos[topic, pick] + (PAGE_NOISE / DIM**0.5) * rng.standard_normal(
            (n, self.tokens, DIM), dtype=np.float32
        )
        dup = np.flatnonzero(rng.random(n) < 0.25)
        dup = dup[dup > 0]
        src = (rng.random(dup.size) * dup).astype(np.int64)  # an earlier page of the batch
        pages[dup] = pages[src] + (DUP_NOISE / DIM**0.5) * rng.standard_normal(
            (dup.size, self.tokens, DIM), dtype=np.float32
        )
        return _unit(pages).astype(np.float16)

    def queries(self, n_pages: int, n: int, seed: int = 1) -> list[torch.Tensor]:
        """``n`` queries: noisy copies of ``QUERY_TOKENS`` vectors of random pages."""
        rng = np.random.default_rng(seed)
        sources = np.sort(rng.integers(n_pages, size=n))
        out = []
        for start in np.unique((sources // BATCH) * BATCH):
            pages = self.batch(int(start), min(BATCH, n_pages - int(start)))
            for i in sources[(sources >= start) & (sources < start + BATCH)]:
                page = pages[int(i) - int(start)].astype(np.float32)
                pick = rng.choice(self.tokens, QUERY_TOKENS, replace=self.tokens < QUERY_TOKENS)
                noise = (QUERY_NOISE / DIM**0.5) * rng.standard_normal((QUERY_TOKENS, DIM))
                out.append(torch.from_numpy(_unit(page[pick] + noise).astype(np.float32)))
        return out


def write_table(root: Path, corpus: Corpus, n_pages: int, reuse: bool = False) -> tuple[Any, float]:
    """The synthetic corpus as one Lance table, written in one streaming commit.

    With ``reuse``, a table this function wrote earlier for the same corpus (``corpus.json``
    records size, tokens and seed) is opened instead of written again.
    """
    import json

    import lancedb

    stamp = {"pages": n_pages, "tokens": corpus.tokens, "seed": corpus.seed, "dim": DIM}
    marker = root / "corpus.json"
    if reuse and marker.exists() and json.loads(marker.read_text()) == stamp:
        return lancedb.connect(str(root)).open_table("leg_page"), 0.0
    if root.exists():
        shutil.rmtree(root)
    db = lancedb.connect(str(root))
    vtype = multivector_type(DIM, "float16")
    schema = pa.schema([("doc_id", pa.string()), ("page_index", pa.int32()), ("vectors", vtype)])

    def batches():
        for start in range(0, n_pages, BATCH):
            n = min(BATCH, n_pages - start)
            ids = np.arange(start, start + n)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([f"doc{i // 20:07d}" for i in ids]),
                    pa.array((ids % 20).astype(np.int32)),
                    multivector_array(list(corpus.batch(start, n)), vtype),
                ],
                schema=schema,
            )

    t0 = time.perf_counter()
    tbl = db.create_table("leg_page", pa.RecordBatchReader.from_batches(schema, batches()))
    marker.write_text(json.dumps(stamp))
    return tbl, time.perf_counter() - t0


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def exact_truth(tbl: Any, queries: list[torch.Tensor], k: int = 10) -> tuple[np.ndarray, float]:
    """Top-k rows of exact MaxSim for every query: one streaming pass, all queries at once."""
    t0 = time.perf_counter()
    scores = []
    for batch in (
        tbl.search().select(["doc_id", "page_index", "vectors"]).limit(None).to_batches(BATCH)
    ):
        values, offsets, _ = PageImageRetriever._flat(pa.Table.from_batches([batch]))
        scores.append(maxsim_scores_batch(queries, values, offsets))
    allscores = np.concatenate(scores, axis=1)
    truth = np.stack([top_k(s, k) for s in allscores])
    return truth, time.perf_counter() - t0


def fetcher(tbl: Any):
    def fetch(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        data = (
            tbl.take_offsets([int(r) for r in rows])
            .select(["doc_id", "page_index", "vectors"])
            .to_arrow()
        )
        values, offsets, _ = PageImageRetriever._flat(data)
        return values, offsets

    return fetch


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def reopen(root: Path, index: Any, tbl: Any, opts: dict[str, Any], query: Any) -> dict[str, Any]:
    """Save the first stage, load it into a fresh index as the next process would, query once."""
    from mm_retriever.multivector.persist import load_state, save_state

    folder = root / "saved-state"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    save_state(folder, 1, index.config(), index.state())
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, arrays = load_state(folder, 1, index.config())
    again = TwoStageIndex(DIM, fetcher(tbl), **opts)
    again.restore(arrays)
    again.search(query, 10)
    out = {
        "save_s": round(save_s, 2),
        "reopen_first_query_s": round(time.perf_counter() - t0, 2),
        "saved_bytes_per_page": round(folder_bytes(folder) / len(index), 1),
    }
    del again, arrays
    shutil.rmtree(folder, ignore_errors=True)
    return out


def build(tbl: Any, index: Any) -> float:
    t0 = time.perf_counter()
    for batch in (
        tbl.search().select(["doc_id", "page_index", "vectors"]).limit(None).to_batches(BATCH)
    ):
        values, offsets, keys = PageImageRetriever._flat(pa.Table.from_batches([batch]))
        index.add(keys, [values[s:e] for s, e in itertools.pairwise(offsets)])
    return time.perf_counter() - t0


def measure(index: Any, queries: list[torch.Tensor], truth: np.ndarray) -> dict[str, float]:
    index.search(queries[0], 10)  # warm up
    lat, recalls, first, first_recall = [], [], [], []
    for q, t in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        rows, _ = index.search(q, 10)
        lat.append((time.perf_counter() - t0) * 1000)
        recalls.append(len(set(rows.tolist()) & set(t.tolist())) / 10)
        if hasattr(index, "candidates_for"):  # the first stage alone: time and truth kept
            t0 = time.perf_counter()
            cands = index.candidates_for(q)
            first.append((time.perf_counter() - t0) * 1000)
            first_recall.append(len(set(cands.tolist()) & set(t.tolist())) / 10)
    out = {
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
    }
    if first:
        out["first_stage_p50_ms"] = round(float(np.percentile(first, 50)), 2)
        out["first_stage_recall_at_10"] = round(float(np.mean(first_recall)), 4)
    return out


REPRESENTATIONS: dict[str, dict[str, Any]] = {
    "exact-f16": {"index": "exact"},
    "two_stage-binary-C300": {"index": "two_stage", "first_stage": "binary", "candidates": 300},
    "two_stage-mean8-C300": {
        "index": "two_stage",
        "first_stage": "mean",
        "segments": 8,
        "candidates": 300,
    },
    "two_stage-mean8-C1000": {
        "index": "two_stage",
        "first_stage": "mean",
        "segments": 8,
        "candidates": 1000,
    },
    "two_stage-mean1-C1000": {
        "index": "two_stage",
        "first_stage": "mean",
        "segments": 1,
        "candidates": 1000,
    },
    "two_stage-cascade-m8-P3000-C300": {
        "index": "two_stage",
        "first_stage": "cascade",
        "segments": 8,
        "prefilter": 3000,
        "candidates": 300,
    },
    "two_stage-ann8-p64-C1000": {
        "index": "two_stage",
        "first_stage": "ann",
        "segments": 8,
        "probe": 64,
        "candidates": 1000,
    },
    # centroid inverted lists: one build, measured at several query-time settings (variants)
    "two_stage-ivf-K65536": {
        "index": "two_stage",
        "first_stage": "ivf",
        "centroids": 65536,
        "nprobe": 4,
        "candidates": 300,
        "variants": [
            {"nprobe": 4, "candidates": 100},
            {"nprobe": 4, "candidates": 300},
            {"nprobe": 8, "candidates": 300},
        ],
    },
    "two_stage-ivf_binary-K65536": {
        "index": "two_stage",
        "first_stage": "ivf_binary",
        "centroids": 65536,
        "nprobe": 4,
        "prefilter": 2000,
        "candidates": 100,
        "variants": [
            {"nprobe": 4, "prefilter": 2000, "candidates": 100},
            {"nprobe": 4, "prefilter": 2000, "candidates": 300},
            {"nprobe": 4, "prefilter": 4000, "candidates": 300},
            {"nprobe": 4, "prefilter": 4000, "candidates": 1000},
            {"nprobe": 8, "prefilter": 8000, "candidates": 1000},
        ],
    },
}
#: First stages whose query cost is a scan of every page (skipped above ``scan_max_pages``).
SCANS = {"binary", "mean", "cascade", None}


def set_variant(index: Any, variant: dict[str, Any]) -> None:
    """Apply query-time settings (``nprobe``, ``prefilter``, ``candidates``) to a built index."""
    first = index.first
    coarse = getattr(first, "coarse", first)
    for key, value in variant.items():
        if key == "candidates":
            index.candidates = value
        elif key == "prefilter":
            first.prefilter = value
        elif key == "nprobe":
            coarse.nprobe = value
        else:
            raise ValueError(f"not a query-time setting: {key}")


def variant_name(name: str, variant: dict[str, Any]) -> str:
    short = {"nprobe": "n", "prefilter": "P", "candidates": "C"}
    return name + "-" + "-".join(f"{short[k]}{v}" for k, v in variant.items())


def run_size(
    root: Path,
    n_pages: int,
    tokens: int,
    n_queries: int,
    exact_ram_limit: int,
    log: Any,
    ann_max_pages: int = 20_000,
    scan_max_pages: int = 200_000,
    reuse: bool = False,
) -> list[dict[str, Any]]:
    corpus = Corpus(tokens)
    tbl, write_s = write_table(root / f"pages-{n_pages}", corpus, n_pages, reuse=reuse)
    disk = folder_bytes(root / f"pages-{n_pages}" / "leg_page.lance")
    how = "reused" if reuse and write_s == 0.0 else f"written in {write_s:.1f}s"
    log(f"{n_pages} pages x {tokens} tokens {how}, {disk / n_pages:.0f} B/page")
    queries = corpus.queries(n_pages, n_queries)
    truth, truth_s = exact_truth(tbl, queries)
    log(f"exact truth (streaming, {n_queries} queries batched) {truth_s:.1f}s")
    rows = []
    for name, rep in REPRESENTATIONS.items():
        if rep.get("first_stage") == "ann" and n_pages > ann_max_pages:
            log(f"{name}: skipped (HNSW build ran at ~1k vectors/s on this box)")
            continue
        if rep.get("first_stage") in SCANS and rep["index"] != "exact" and n_pages > scan_max_pages:
            log(f"{name}: skipped (scans every page: linear, see the growth curve)")
            continue
        if rep["index"] == "exact":
            if n_pages * tokens * DIM * 2 > exact_ram_limit:
                log(f"{name}: skipped (would hold {n_pages * tokens * DIM * 2 / 2**30:.1f} GiB)")
                continue
            index = ExactIndex(DIM)
        else:
            opts = {k: v for k, v in rep.items() if k not in ("index", "variants")}
            index = TwoStageIndex(DIM, fetcher(tbl), **opts)
        rss_before = rss_bytes()
        build_s = build(tbl, index)
        index.search(queries[0], 10)  # lazy parts (list merges) happen on the first query
        rss_growth = (rss_bytes() - rss_before) / n_pages
        for variant in rep.get("variants", [{}]):
            if variant:
                set_variant(index, variant)
            row = {
                "pages": n_pages,
                "tokens_per_page": tokens,
                "representation": variant_name(name, variant) if variant else name,
                **measure(index, queries, truth),
                "ram_bytes_per_page": round(index.nbytes / n_pages, 1),
                "disk_bytes_per_page": round(disk / n_pages, 1),
                "build_s": round(build_s, 2),
                "rss_growth_bytes_per_page": round(rss_growth, 1),
                "options": {**{k: v for k, v in rep.items() if k != "variants"}, **variant},
            }
            log(str(row))
            rows.append(row)
        if rep["index"] == "two_stage" and rep.get("first_stage") != "ann":
            saved = reopen(root, index, tbl, opts, queries[0])
            log(f"{name}: saved state {saved}")
            for row in rows[-len(rep.get("variants", [{}])) :]:
                row.update(saved)
        del index
    return rows
