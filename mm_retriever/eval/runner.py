"""Run pipelines over a data set: build (or reuse) indexes, time queries, score rankings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mm_retriever.eval.datasets import DatasetError, EvalDataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.eval.pipelines import (
    BuildStats,
    OursPipeline,
    Pipeline,
    PipelineUnavailable,
    Scope,
)
from mm_retriever.eval.report import results_document
from mm_retriever.eval.slices import query_slices

log = logging.getLogger("mm_retriever")

SCOPES: tuple[Scope, ...] = ("within-doc", "corpus")
RANK_DEPTH = 10  # pages asked per query: enough for MRR@10


def share_indexes(pipelines: Sequence[Pipeline]) -> dict[str, str]:
    """Point each of our pipelines at the largest requested index that covers it.

    ``text`` and ``bm25`` are legs of the default index, so with ``hybrid`` in the same run they
    query its index instead of building their own. Returns ``{pipeline: pipeline whose index}``.
    """
    ours = [p for p in pipelines if isinstance(p, OursPipeline)]
    plan: list[tuple[OursPipeline, OursPipeline]] = []
    for p in ours:  # decide on the configs as given, then apply
        hosts = [q for q in ours if q is not p and len(q.config.legs) > len(p.config.legs)]
        hosts = [q for q in hosts if q.covers(p)]
        if hosts:
            plan.append((p, max(hosts, key=lambda q: len(q.config.legs))))
    shared: dict[str, str] = {}
    for p, host in plan:
        p.use_index_of(host)
        shared[p.name] = host.name
    return shared


def measure_ocr(
    files: Sequence[Path], engine: str, dpi: int, max_side: int, runtime: str, n_pages: int
) -> float | None:
    """Seconds per page for ``engine`` on the first ``n_pages`` pages (rendered at ``dpi``),
    measured without the OCR cache."""
    if n_pages <= 0:
        return None
    import pymupdf
    from PIL import Image

    from mm_retriever.ingest import get_ocr_engine

    ocr = get_ocr_engine(engine, dpi, max_side, runtime)
    seconds: list[float] = []
    for f in files:
        if f.suffix.lower() != ".pdf":
            images = [Image.open(f).convert("RGB")]
        else:
            with pymupdf.open(f) as doc:
                images = []
                for page in doc:
                    pix = page.get_pixmap(dpi=dpi)
                    images.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
                    if len(images) + len(seconds) >= n_pages:
                        break
        for im in images:
            t0 = time.perf_counter()
            ocr.read(im)
            seconds.append(time.perf_counter() - t0)
        if len(seconds) >= n_pages:
            break
    return float(np.mean(seconds)) if seconds else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run(
    dataset: EvalDataset,
    pipelines: Sequence[Pipeline],
    scopes: Sequence[Scope],
    workdir: str | Path,
    *,
    progress: bool = False,
    ocr_sample: int = 3,
    on_event: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every pipeline in every scope; one results document (the JSON layout) per scope.

    A pipeline that cannot run here is listed with ``"skipped": reason`` instead of metrics.
    """
    say = on_event or (lambda msg: log.info(msg))
    workdir = Path(workdir)
    for scope in scopes:
        if scope not in SCOPES:
            raise DatasetError(f"unknown scope '{scope}': use within-doc or corpus")
        if scope == "within-doc" and not dataset.has_docs:
            raise DatasetError(
                f"{dataset.name}: queries do not name their document, so within-doc scoring is "
                "not possible; use --scope corpus"
            )
    shared = share_indexes(pipelines)
    for name, host in shared.items():
        say(f"{name}: queries the index of {host} (same ingest and leg settings)")
    sources = {q.query_id: q.sources for q in dataset.queries}
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    slices = query_slices(dataset.queries)
    results: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in scopes}
    ocr_times: dict[tuple[str, int], float | None] = {}
    for pipe in pipelines:
        say(f"{pipe.name}: building ({pipe.description})")
        try:
            stats = pipe.build(dataset, workdir, progress=progress)
        except PipelineUnavailable as exc:
            say(f"{pipe.name}: skipped: {exc}")
            for scope in scopes:
                results[scope][pipe.name] = {"kind": pipe.kind, "skipped": str(exc)}
            continue
        say(
            f"{pipe.name}: {'reused' if stats.reused else 'built'} index of {stats.pages} pages"
            + ("" if stats.reused else f" in {stats.seconds:.0f}s")
        )
        ocr_s = None
        engine = pipe.ocr_engine()
        if engine is not None:
            if engine not in ocr_times:
                ocr_times[engine] = measure_ocr(dataset.files, *engine, ocr_sample)
            ocr_s = ocr_times[engine]
        if dataset.queries:  # warm-up: model loading is not query time
            pipe.search(dataset.queries[0], RANK_DEPTH, scopes[0])
        for scope in scopes:
            rankings, times = _query_all(pipe, dataset, scope, progress)
            scores = evaluate_rankings(rankings, qrels, sources, slices=slices)
            results[scope][pipe.name] = _entry(pipe, stats, scores, times, ocr_s, shared)
            say(
                f"{pipe.name} [{scope}]: nDCG@5 {scores['ndcg@5']:.3f}  R@5 "
                f"{scores['recall@5']:.3f}  MRR@10 {scores['mrr@10']:.3f}"
            )
        pipe.close()
    return [results_document(dataset.name, s, results[s], slices) for s in scopes]


def _query_all(
    pipe: Pipeline, dataset: EvalDataset, scope: Scope, progress: bool
) -> tuple[dict[str, list], list[float]]:
    rankings: dict[str, list] = {}
    times: list[float] = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task(f"{pipe.name} [{scope}]", total=len(dataset.queries))
    try:
        for q in dataset.queries:
            t0 = time.perf_counter()
            rankings[q.query_id] = pipe.search(q, RANK_DEPTH, scope)
            times.append((time.perf_counter() - t0) * 1000.0)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return rankings, times


def _entry(
    pipe: Pipeline,
    stats: BuildStats,
    scores: dict[str, Any],
    times: list[float],
    ocr_s: float | None,
    shared: dict[str, str],
) -> dict[str, Any]:
    pages = max(stats.pages, 1)
    entry: dict[str, Any] = {
        "ndcg@5": scores["ndcg@5"],
        "recall@5": scores["recall@5"],
        "mrr@10": scores["mrr@10"],
        "by_source": scores["by_source"],
        "by_slice": scores.get("by_slice", {}),
        "index_s_per_page": stats.seconds / pages,
        "query_ms_p50": _percentile(times, 50),
        "query_ms_p95": _percentile(times, 95),
        "bytes_per_page": (stats.bytes / pages) if stats.bytes else None,
        "kind": pipe.kind,
        "n_queries": scores["n"],
        "pages": stats.pages,
        "ocr_s_per_page": ocr_s,
        "description": pipe.description,
        "settings": pipe.settings(),
        "per_query": scores["per_query"],
    }
    if pipe.name in shared:
        entry["index_shared_with"] = shared[pipe.name]
    if stats.failed:
        entry["failed_files"] = stats.failed
    return entry
