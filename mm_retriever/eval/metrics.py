"""Ranking metrics: nDCG@k, Recall@k, MRR@k, averaged overall and per evidence source.

A ranking is a list of page keys (any hashable, e.g. ``(doc, page_index)``), best first; qrels map
a key to its graded relevance (0 = not relevant). nDCG uses linear gain (``rel / log2(rank + 1)``),
as trec_eval and BEIR do; the ideal ranking is built from all judged pages of the query.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

DEFAULT_METRICS: tuple[tuple[str, int], ...] = (("ndcg", 5), ("recall", 5), ("mrr", 10))


def ndcg_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Normalised discounted cumulative gain of the top ``k`` (0 when nothing is relevant)."""
    _check_k(k)
    seen: set[Hashable] = set()
    dcg = 0.0
    for i, key in enumerate(ranked[:k]):
        if key in seen:  # a page counts once, however often a ranking repeats it
            continue
        seen.add(key)
        dcg += qrels.get(key, 0) / math.log2(i + 2)
    ideal = sorted((r for r in qrels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Share of the relevant pages found in the top ``k``."""
    _check_k(k)
    relevant = {key for key, r in qrels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[Hashable], qrels: Mapping[Hashable, float], k: int) -> float:
    """Reciprocal rank of the first relevant page within the top ``k`` (0 if none)."""
    _check_k(k)
    for i, key in enumerate(ranked[:k]):
        if qrels.get(key, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


_FUNCS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k}


def score_query(
    ranked: Sequence[Hashable],
    qrels: Mapping[Hashable, float],
    metrics: Sequence[tuple[str, int]] = DEFAULT_METRICS,
) -> dict[str, float]:
    """All metrics of one query, named like ``"ndcg@5"``."""
    return {f"{name}@{k}": _FUNCS[name](ranked, qrels, k) for name, k in metrics}


def evaluate_rankings(
    rankings: Mapping[str, Sequence[Hashable]],
    qrels: Mapping[str, Mapping[Hashable, float]],
    sources: Mapping[str, Sequence[str]] | None = None,
    metrics: Sequence[tuple[str, int]] = DEFAULT_METRICS,
) -> dict[str, Any]:
    """Mean metrics over the queries in ``qrels``, plus ``by_source`` and ``per_query``.

    A query missing from ``rankings`` counts as an empty ranking (scores 0). A query with several
    evidence sources counts in each of them. Returns
    ``{"n": n, "ndcg@5": x, ..., "by_source": {src: {"n": n, "ndcg@5": x, ...}},
    "per_query": {qid: {...}}}``.
    """
    per_query = {
        qid: score_query(rankings.get(qid, []), rel, metrics) for qid, rel in qrels.items()
    }
    names = [f"{name}@{k}" for name, k in metrics]
    out: dict[str, Any] = {"n": len(per_query), **_mean(per_query.values(), names)}
    groups: dict[str, list[dict[str, float]]] = {}
    for qid, scores in per_query.items():
        for src in (sources or {}).get(qid, []):
            groups.setdefault(src, []).append(scores)
    out["by_source"] = {
        src: {"n": len(rows), **_mean(rows, names)} for src, rows in sorted(groups.items())
    }
    out["per_query"] = per_query
    return out


def _mean(rows: Any, names: Sequence[str]) -> dict[str, float]:
    rows = list(rows)
    return {n: (sum(r[n] for r in rows) / len(rows) if rows else 0.0) for n in names}


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
