"""Ranking metrics: nDCG@k, Recall@k, MRR@k, from ir-measures (trec_eval's C code underneath).

A ranking is a list of page keys (any hashable, e.g. ``(doc, page_index)``), best first; qrels map
a key to its graded relevance (0 = not relevant). The numbers come from ``ir_measures`` with its
``pytrec_eval`` provider, i.e. trec_eval's own implementation (``ndcg_cut`` with linear gain,
``recall``, ``recip_rank`` on the run cut at ``k``); ``tests/test_eval_metrics.py`` checks them
against trec_eval on a fixture. Rankings become trec runs with strictly decreasing scores, so
trec_eval's tie-breaking never reorders them; a page listed twice keeps its first (best) rank.
A query without any relevant page scores 0 (trec_eval would leave it out of the mean).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import ir_measures

DEFAULT_METRICS: tuple[tuple[str, int], ...] = (("ndcg", 5), ("recall", 5), ("mrr", 10))

_MEASURES = {"ndcg": ir_measures.nDCG, "recall": ir_measures.R, "mrr": ir_measures.RR}


def _doc_key(key: Hashable) -> str:
    """A page key as a trec document id (tuples joined with a unit separator)."""
    if isinstance(key, tuple):
        return "\x1f".join(str(part) for part in key)
    return str(key)


def trec_run(ranked: Sequence[Hashable]) -> dict[str, float]:
    """A ranking as a trec run: ``{doc_id: score}``, scores strictly decreasing, first rank kept."""
    run: dict[str, float] = {}
    for key in ranked:
        run.setdefault(_doc_key(key), float(len(ranked) - len(run)))
    return run


def trec_qrels(qrels: Mapping[Hashable, float]) -> dict[str, int]:
    return {_doc_key(key): int(rel) for key, rel in qrels.items()}


def _measure(name: str, k: int) -> Any:
    """The ir-measures measure for ``name@k``; MRR is trec_eval's ``recip_rank`` on a run cut
    at ``k`` (like ``trec_eval -M k``), since the pytrec_eval provider has no RR cutoff."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if name not in _MEASURES:
        raise ValueError(f"unknown metric {name!r}: use one of {', '.join(_MEASURES)}")
    return _MEASURES[name] if name == "mrr" else _MEASURES[name] @ k


def score_queries(
    rankings: Mapping[str, Sequence[Hashable]],
    qrels: Mapping[str, Mapping[Hashable, float]],
    metrics: Sequence[tuple[str, int]] = DEFAULT_METRICS,
) -> dict[str, dict[str, float]]:
    """``{query_id: {"ndcg@5": x, ...}}`` for every query in ``qrels`` (missing ones score 0)."""
    per_query = {qid: {f"{name}@{k}": 0.0 for name, k in metrics} for qid in qrels}
    tq = {qid: trec_qrels(rel) for qid, rel in qrels.items()}
    # one pass per run depth: full runs for the cutoff measures, cut runs for MRR@k
    passes: dict[int | None, dict[Any, str]] = {}
    for name, k in metrics:
        depth = k if name == "mrr" else None
        passes.setdefault(depth, {})[_measure(name, k)] = f"{name}@{k}"
    for depth, measures in passes.items():
        # trec_eval reports a query only when it has judgements and retrieved pages
        run = {qid: trec_run(list(rankings.get(qid, []))[:depth]) for qid in qrels if tq[qid]}
        run = {qid: r for qid, r in run.items() if r}
        if not run:
            continue
        for m in ir_measures.pytrec_eval.iter_calc(list(measures), tq, run):
            if m.query_id in per_query:
                per_query[m.query_id][measures[m.measure]] = float(m.value)
    return per_query


def score_query(
    ranked: Sequence[Hashable],
    qrels: Mapping[Hashable, float],
    metrics: Sequence[tuple[str, int]] = DEFAULT_METRICS,
) -> dict[str, float]:
    """All metrics of one query, named like ``"ndcg@5"``."""
    return score_queries({"q": ranked}, {"q": qrels}, metrics)["q"]


def ndcg_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` (0 when nothing is relevant)."""
    return score_query(ranked, qrels, [("ndcg", k)])[f"ndcg@{k}"]


def recall_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Share of the relevant pages found in the top ``k``."""
    return score_query(ranked, qrels, [("recall", k)])[f"recall@{k}"]


def mrr_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Reciprocal rank of the first relevant page within the top ``k`` (0 if none)."""
    return score_query(ranked, qrels, [("mrr", k)])[f"mrr@{k}"]


def evaluate_rankings(
    rankings: Mapping[str, Sequence[Hashable]],
    qrels: Mapping[str, Mapping[Hashable, float]],
    sources: Mapping[str, Sequence[str]] | None = None,
    metrics: Sequence[tuple[str, int]] = DEFAULT_METRICS,
    slices: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Mean metrics over the queries in ``qrels``, plus ``by_source``, ``by_slice``, ``per_query``.

    A query missing from ``rankings`` counts as an empty ranking (scores 0). A query with several
    evidence sources (or slices) counts in each of them. ``slices`` maps a query id to the named
    subsets it belongs to (e.g. ``filings``, ``doc_type:Guidebook``). Returns
    ``{"n": n, "ndcg@5": x, ..., "by_source": {src: {"n": n, "ndcg@5": x, ...}},
    "by_slice": {...}, "per_query": {qid: {...}}}``.
    """
    per_query = score_queries(rankings, qrels, metrics)
    names = [f"{name}@{k}" for name, k in metrics]
    out: dict[str, Any] = {"n": len(per_query), **_mean(per_query.values(), names)}
    out["by_source"] = _grouped(per_query, sources, names)
    if slices is not None:
        out["by_slice"] = _grouped(per_query, slices, names)
    out["per_query"] = per_query
    return out


def _grouped(
    per_query: Mapping[str, Mapping[str, float]],
    groups_of: Mapping[str, Sequence[str]] | None,
    names: Sequence[str],
) -> dict[str, dict[str, float]]:
    groups: dict[str, list[Mapping[str, float]]] = {}
    for qid, scores in per_query.items():
        for group in (groups_of or {}).get(qid, []):
            groups.setdefault(group, []).append(scores)
    return {g: {"n": len(rows), **_mean(rows, names)} for g, rows in sorted(groups.items())}


def _mean(rows: Any, names: Sequence[str]) -> dict[str, float]:
    rows = list(rows)
    return {n: (sum(r[n] for r in rows) / len(rows) if rows else 0.0) for n in names}
