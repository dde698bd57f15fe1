"""Fusion: RRF and weighted normalised scores, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from mm_retriever import registry
from mm_retriever.ranking.fusion import RRFFusion, WeightedFusion
from mm_retriever.types import LegHit


def hits(*items: tuple[str, int, float]) -> list[LegHit]:
    return [LegHit(d, p, s, rank=i) for i, (d, p, s) in enumerate(items, start=1)]


RANKINGS = {
    "a": hits(("d", 1, 10.0), ("d", 2, 5.0), ("d", 3, 0.0)),
    "b": hits(("d", 2, 0.9), ("d", 4, 0.3)),
}


def keys(fused) -> list[int]:
    return [h.page_index for h in fused]


def test_rrf_hand_computed() -> None:
    fused = RRFFusion(k=60).fuse(RANKINGS, k=10)
    expected = {1: 1 / 61, 2: 1 / 62 + 1 / 61, 3: 1 / 63, 4: 1 / 62}
    assert keys(fused) == [2, 1, 4, 3]
    for h in fused:
        assert h.score == pytest.approx(expected[h.page_index], abs=1e-12)
    p2 = fused[0]
    assert p2.leg_ranks == {"a": 2, "b": 1}
    assert p2.leg_scores == {"a": 5.0, "b": 0.9}
    assert p2.leg_hits["b"] is RANKINGS["b"][0]


def test_rrf_weights_and_k() -> None:
    fused = RRFFusion(k=60, weights={"a": 2.0}).fuse(RANKINGS, k=10)
    expected = {1: 2 / 61, 2: 2 / 62 + 1 / 61, 3: 2 / 63, 4: 1 / 62}
    assert keys(fused) == [2, 1, 3, 4]
    for h in fused:
        assert h.score == pytest.approx(expected[h.page_index], abs=1e-12)
    small_k = RRFFusion(k=0).fuse(RANKINGS, k=2)
    assert keys(small_k) == [2, 1]
    assert small_k[0].score == pytest.approx(1 / 2 + 1 / 1)


def test_rrf_uses_position_when_rank_missing() -> None:
    unranked = {"a": [LegHit("d", 7, 0.1), LegHit("d", 8, 0.05)]}
    fused = RRFFusion(k=1).fuse(unranked, k=5)
    assert [h.leg_ranks["a"] for h in fused] == [1, 2]
    assert fused[1].score == pytest.approx(1 / 3)


def test_ties_are_deterministic() -> None:
    one = {"x": hits(("b", 0, 1.0)), "y": hits(("a", 5, 1.0))}
    other = {"y": hits(("a", 5, 1.0)), "x": hits(("b", 0, 1.0))}
    for fusion in (RRFFusion(), WeightedFusion(), WeightedFusion(normalization="zscore")):
        first = [(h.doc_id, h.page_index) for h in fusion.fuse(one, 5)]
        second = [(h.doc_id, h.page_index) for h in fusion.fuse(other, 5)]
        assert first == second == [("a", 5), ("b", 0)]


def test_weighted_minmax_hand_computed() -> None:
    fused = WeightedFusion().fuse(RANKINGS, k=10)
    # a: 10, 5, 0 -> 1, .5, 0 ; b: .9, .3 -> 1, 0 ; missing legs add 0
    expected = {1: 1.0, 2: 1.5, 3: 0.0, 4: 0.0}
    for h in fused:
        assert h.score == pytest.approx(expected[h.page_index])
    # pages 3 and 4 tie at 0: page 4's best leg rank (2) beats page 3's (3)
    assert keys(fused) == [2, 1, 4, 3]
    weighted = WeightedFusion(weights={"b": 3.0}).fuse(RANKINGS, k=10)
    assert {h.page_index: h.score for h in weighted} == pytest.approx(
        {1: 1.0, 2: 3.5, 3: 0.0, 4: 0.0}
    )


def test_weighted_minmax_constant_leg() -> None:
    fused = WeightedFusion().fuse({"a": hits(("d", 1, 0.4), ("d", 2, 0.4))}, k=5)
    assert [h.score for h in fused] == [1.0, 1.0]


def test_weighted_zscore_hand_computed() -> None:
    fused = WeightedFusion(normalization="zscore").fuse(RANKINGS, k=10)
    std_a = math.sqrt((25 + 0 + 25) / 3)
    za = {1: 5 / std_a, 2: 0.0, 3: -5 / std_a}
    zb = {2: 1.0, 4: -1.0}
    expected = {p: za.get(p, min(za.values())) + zb.get(p, min(zb.values())) for p in (1, 2, 3, 4)}
    for h in fused:
        assert h.score == pytest.approx(expected[h.page_index])
    assert keys(fused) == [2, 1, 4, 3]


def test_empty_and_invalid() -> None:
    assert RRFFusion().fuse({}, 5) == []
    assert WeightedFusion().fuse({"a": []}, 5) == []
    with pytest.raises(ValueError, match="normalization"):
        WeightedFusion(normalization="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RRFFusion(k=-1)


def test_registry_and_config_round_trip() -> None:
    rrf = registry.fusions.create("rrf", k=10, weights={"page": 2.0})
    assert isinstance(rrf, RRFFusion)
    assert registry.fusions.create("rrf", **rrf.config()).config() == {
        "k": 10,
        "weights": {"page": 2.0},
    }
    weighted = registry.fusions.create("weighted", normalization="zscore")
    assert isinstance(weighted, WeightedFusion)
    assert weighted.config() == {"weights": {}, "normalization": "zscore"}
