"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from mm_retriever.eval.metrics import evaluate_rankings, mrr_at_k, ndcg_at_k, recall_at_k

RANKED = ["a", "b", "c", "d", "e", "f"]
QRELS = {"b": 1, "d": 1, "x": 1}  # x is never retrieved


def test_ndcg_binary_by_hand() -> None:
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # b at rank 2, d at rank 4
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant pages
    assert ndcg_at_k(RANKED, QRELS, 5) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, QRELS, 5) == pytest.approx(0.498189, abs=1e-6)


def test_ndcg_graded_and_cutoff() -> None:
    qrels = {"a": 2, "c": 1}
    # ranking c, a: DCG = 1/1 + 2/log2(3); ideal a, c: 2/1 + 1/log2(3)
    assert ndcg_at_k(["c", "a"], qrels, 5) == pytest.approx(
        (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    )
    assert ndcg_at_k(["c", "a"], qrels, 1) == pytest.approx(1 / 2)  # ideal@1 is a (gain 2)
    assert ndcg_at_k(["a", "c"], qrels, 5) == pytest.approx(1.0)


def test_recall_and_mrr_by_hand() -> None:
    assert recall_at_k(RANKED, QRELS, 5) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, QRELS, 1) == 0.0
    assert mrr_at_k(RANKED, QRELS, 10) == pytest.approx(1 / 2)
    assert mrr_at_k(RANKED, {"f": 1}, 5) == 0.0  # first hit at rank 6 is past the cutoff
    assert mrr_at_k(RANKED, {"f": 1}, 10) == pytest.approx(1 / 6)


def test_edge_cases() -> None:
    assert ndcg_at_k([], QRELS, 5) == 0.0
    assert ndcg_at_k(RANKED, {}, 5) == 0.0
    assert recall_at_k(RANKED, {"a": 0}, 5) == 0.0
    # a page listed twice counts once
    assert ndcg_at_k(["b", "b"], {"b": 1}, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(RANKED, QRELS, 0)


def test_evaluate_rankings_means_and_sources() -> None:
    rankings = {"q1": ["a", "b"], "q2": ["b", "a"]}  # q3 missing: counts as empty
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}, "q3": {"a": 1}}
    sources = {"q1": ["chart"], "q2": ["chart", "table"], "q3": ["table"]}
    out = evaluate_rankings(rankings, qrels, sources)
    ndcg_q2 = 1 / math.log2(3)
    assert out["n"] == 3
    assert out["ndcg@5"] == pytest.approx((1 + ndcg_q2 + 0) / 3)
    assert out["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out["recall@5"] == pytest.approx(2 / 3)
    assert out["by_source"]["chart"] == pytest.approx(
        {"n": 2, "ndcg@5": (1 + ndcg_q2) / 2, "recall@5": 1.0, "mrr@10": 0.75}
    )
    assert out["by_source"]["table"]["n"] == 2
    assert out["by_source"]["table"]["mrr@10"] == pytest.approx(0.25)
    assert out["per_query"]["q3"] == {"ndcg@5": 0.0, "recall@5": 0.0, "mrr@10": 0.0}
