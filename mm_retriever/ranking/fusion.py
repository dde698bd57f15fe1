"""Page-level fusion of per-leg rankings: reciprocal rank fusion and weighted normalised scores.

Both fusions take ``{leg_name: [LegHit, ...]}`` (each list best first) and return ``FusedHit``s
with every leg's rank, raw score and hit. Ties are broken deterministically: best single-leg rank,
then ``doc_id``, then ``page_index``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from mm_retriever.types import FusedHit, LegHit, PageKey


def _collect(rankings: Mapping[str, Sequence[LegHit]]) -> dict[PageKey, FusedHit]:
    """One FusedHit per page, filled with each leg's rank (1-based), raw score and hit."""
    fused: dict[PageKey, FusedHit] = {}
    for leg, hits in rankings.items():
        for position, hit in enumerate(hits, start=1):
            fh = fused.get(hit.key)
            if fh is None:
                fh = fused[hit.key] = FusedHit(hit.doc_id, hit.page_index, 0.0)
            if leg in fh.leg_ranks:  # a leg listing a page twice: keep its best entry
                continue
            fh.leg_ranks[leg] = hit.rank if hit.rank > 0 else position
            fh.leg_scores[leg] = float(hit.score)
            fh.leg_hits[leg] = hit
    return fused


def _top(fused: dict[PageKey, FusedHit], k: int) -> list[FusedHit]:
    def order(h: FusedHit) -> tuple[float, int, str, int]:
        best = min(h.leg_ranks.values(), default=1 << 30)
        return (-h.score, best, h.doc_id, h.page_index)

    return sorted(fused.values(), key=order)[: max(k, 0)]


def _weight(weights: Mapping[str, float] | None, leg: str) -> float:
    return float(weights.get(leg, 1.0)) if weights else 1.0


class RRFFusion:
    """Reciprocal rank fusion: ``score(page) = sum_leg w_leg / (k + rank_leg(page))``.

    Legs that did not return the page contribute nothing. ``weights`` default to 1.0 per leg.
    """

    def __init__(self, k: int = 60, weights: Mapping[str, float] | None = None) -> None:
        if k < 0:
            raise ValueError(f"RRF k must be >= 0, got {k}")
        self.k = int(k)
        self.weights = dict(weights or {})

    def fuse(self, rankings: Mapping[str, Sequence[LegHit]], k: int) -> list[FusedHit]:
        fused = _collect(rankings)
        for fh in fused.values():
            fh.score = sum(
                _weight(self.weights, leg) / (self.k + rank) for leg, rank in fh.leg_ranks.items()
            )
        return _top(fused, k)

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "weights": dict(self.weights)}

    def __repr__(self) -> str:
        return f"RRFFusion(k={self.k}, weights={self.weights})"


Normalization = Literal["minmax", "zscore"]


class WeightedFusion:
    """Weighted sum of per-leg normalised scores.

    ``minmax`` maps each leg's scores to [0, 1] (all equal -> 1); a leg that did not return a page
    contributes 0. ``zscore`` standardises each leg's scores (zero spread -> 0); a leg that did not
    return a page contributes that leg's lowest z-score among its returned hits.
    """

    def __init__(
        self, weights: Mapping[str, float] | None = None, normalization: Normalization = "minmax"
    ) -> None:
        if normalization not in ("minmax", "zscore"):
            raise ValueError(f"normalization must be 'minmax' or 'zscore', got {normalization!r}")
        self.weights = dict(weights or {})
        self.normalization: Normalization = normalization

    def _normalise(self, scores: list[float]) -> tuple[list[float], float]:
        """Normalised scores plus the value a missing page gets."""
        if self.normalization == "minmax":
            lo, hi = min(scores), max(scores)
            if hi - lo <= 0:
                return [1.0] * len(scores), 0.0
            return [(s - lo) / (hi - lo) for s in scores], 0.0
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        z = [(s - mean) / std if std > 0 else 0.0 for s in scores]
        return z, min(z)

    def fuse(self, rankings: Mapping[str, Sequence[LegHit]], k: int) -> list[FusedHit]:
        fused = _collect(rankings)
        for leg in rankings:
            keys = [key for key, fh in fused.items() if leg in fh.leg_scores]
            if not keys:
                continue
            norm, missing = self._normalise([fused[key].leg_scores[leg] for key in keys])
            w = _weight(self.weights, leg)
            by_key = dict(zip(keys, norm, strict=True))
            for key, fh in fused.items():
                fh.score += w * by_key.get(key, missing)
        return _top(fused, k)

    def config(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "normalization": self.normalization}

    def __repr__(self) -> str:
        return f"WeightedFusion(weights={self.weights}, normalization={self.normalization!r})"


def _zscores(values: Sequence[float]) -> list[float]:
    if not values:
        return []
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


def apply_document_prior(
    fused: Sequence[FusedHit], doc_scores: Mapping[str, float], weight: float
) -> list[FusedHit]:
    """Re-rank fused pages with a document prior: ``z(page score) + weight * z(doc score)``.

    Page scores are z-scored over ``fused``; document scores over every document in
    ``doc_scores`` (a document missing there gets the lowest). Each hit's ``score`` becomes the
    combined value and ``leg_scores["document"]`` records the raw document score. With one
    document among the pages, or ``weight == 0`` or no document scores, the order is unchanged.
    """
    hits = list(fused)
    if not hits or weight == 0 or not doc_scores:
        return hits
    docs = sorted(doc_scores)
    doc_z = dict(zip(docs, _zscores([doc_scores[d] for d in docs]), strict=True))
    floor = min(doc_z.values())
    page_z = _zscores([h.score for h in hits])
    for h, z in zip(hits, page_z, strict=True):
        h.score = z + weight * doc_z.get(h.doc_id, floor)
        h.leg_scores["document"] = float(doc_scores.get(h.doc_id, 0.0))
    return _top({h.key: h for h in hits}, len(hits))
