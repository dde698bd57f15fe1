"""Paired significance tests and bootstrap intervals for per-query retrieval scores (scipy).

Two pipelines scored on the same queries are compared pairwise: a two-sided paired randomisation
(permutation) test on the mean difference, which swaps the two scores of a query at random
(Smucker et al., CIKM 2007, the usual choice in IR), plus the paired t-test, and a 95 % BCa
bootstrap interval of the mean difference. Everything is seeded, so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
N_RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class PairedComparison:
    """``pipeline`` minus ``reference`` on one metric over ``n`` shared queries."""

    pipeline: str
    reference: str
    metric: str
    n: int
    mean: float
    reference_mean: float
    diff: float
    ci_low: float
    ci_high: float
    p_randomization: float
    p_ttest: float

    @property
    def significant(self) -> bool:
        """True when the randomisation test rejects "no difference" at ``ALPHA``."""
        return self.p_randomization < ALPHA

    def verdict(self) -> str:
        """A short phrase for reports: better / worse / not significant."""
        if not self.significant:
            return "not significant"
        return "better" if self.diff > 0 else "worse"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def mean_ci(
    values: Sequence[float], confidence: float = 0.95, *, seed: int = SEED
) -> tuple[float, float]:
    """BCa bootstrap interval of the mean (a point interval when all values are equal)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1 or np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=N_RESAMPLES,
        method="BCa",
        rng=np.random.default_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_test(
    scores: Sequence[float],
    reference: Sequence[float],
    *,
    pipeline: str = "pipeline",
    reference_name: str = "reference",
    metric: str = "ndcg@5",
    seed: int = SEED,
) -> PairedComparison:
    """Compare two equally long, query-aligned score lists."""
    a = np.asarray(scores, dtype=float)
    b = np.asarray(reference, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need equal 1-d shapes, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError("a paired test needs at least 2 queries")
    d = a - b
    if np.all(d == d[0]):  # identical rankings (or a constant shift): nothing to randomise
        p_rand = 1.0 if d[0] == 0 else 0.0
        p_t = p_rand
    else:
        perm = stats.permutation_test(
            (a, b),
            lambda x, y, axis: np.mean(x - y, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=N_RESAMPLES,
            alternative="two-sided",
            rng=np.random.default_rng(seed),
        )
        p_rand = float(perm.pvalue)
        p_t = float(stats.ttest_rel(a, b).pvalue)
    lo, hi = mean_ci(d, seed=seed)
    return PairedComparison(
        pipeline=pipeline,
        reference=reference_name,
        metric=metric,
        n=int(a.size),
        mean=float(a.mean()),
        reference_mean=float(b.mean()),
        diff=float(d.mean()),
        ci_low=lo,
        ci_high=hi,
        p_randomization=p_rand,
        p_ttest=p_t,
    )


def compare_to_reference(
    per_query: Mapping[str, Mapping[str, Mapping[str, float]]],
    reference: str,
    *,
    metric: str = "ndcg@5",
    queries: Sequence[str] | None = None,
) -> list[PairedComparison]:
    """Every pipeline of ``per_query`` (``{pipeline: {query_id: {metric: x}}}``) against
    ``reference``, on ``queries`` (default: the reference's queries). Pipelines without per-query
    scores for some of those queries count them as 0, as the metrics do."""
    if reference not in per_query:
        raise KeyError(f"reference pipeline {reference!r} has no per-query scores")
    qids = list(queries) if queries is not None else sorted(per_query[reference])
    ref = [per_query[reference].get(q, {}).get(metric, 0.0) for q in qids]
    out = []
    for name, rows in per_query.items():
        if name == reference:
            continue
        vals = [rows.get(q, {}).get(metric, 0.0) for q in qids]
        out.append(paired_test(vals, ref, pipeline=name, reference_name=reference, metric=metric))
    return out
