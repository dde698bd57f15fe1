"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytrec_eval

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


# ------------------------------------------------- against trec_eval on a fixture

FIXTURE = Path(__file__).parent / "data" / "trec_fixture"


def _read_trec() -> tuple[dict, dict]:
    """The fixture's qrels and run in trec_eval's file formats, parsed by pytrec_eval."""
    with open(FIXTURE / "qrels.txt") as f:
        qrels = pytrec_eval.parse_qrel(f)
    with open(FIXTURE / "run.txt") as f:
        run = pytrec_eval.parse_run(f)
    return qrels, run


def _trec_order(scores: dict[str, float]) -> list[str]:
    """trec_eval's ranking: score descending, ties by document id descending."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def test_metrics_equal_trec_eval_on_fixture() -> None:
    """nDCG@5 (ndcg_cut.5), Recall@5 (recall.5) and MRR@10 (recip_rank with -M 10) per query
    equal trec_eval's (pytrec_eval runs trec_eval's C code) on graded qrels, a relevant page
    past the cutoff, a judged-irrelevant page and a query without a run."""
    qrels, run = _read_trec()
    rankings = {qid: _trec_order(scores) for qid, scores in run.items()}
    ours = evaluate_rankings(rankings, qrels)["per_query"]
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.5", "recall.5"}).evaluate(run)
    cut = {qid: {d: run[qid][d] for d in order[:10]} for qid, order in rankings.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    assert set(full) == {"q1", "q2", "q3", "q4"}  # trec_eval skips q5 (no run)
    for qid in full:
        assert ours[qid]["ndcg@5"] == pytest.approx(full[qid]["ndcg_cut_5"], abs=1e-12)
        assert ours[qid]["recall@5"] == pytest.approx(full[qid]["recall_5"], abs=1e-12)
        assert ours[qid]["mrr@10"] == pytest.approx(rr[qid]["recip_rank"], abs=1e-12)
    assert ours["q5"] == {"ndcg@5": 0.0, "recall@5": 0.0, "mrr@10": 0.0}
    # and by hand, so the reference itself is pinned
    ideal = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ours["q1"]["ndcg@5"] == pytest.approx((2 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert ours["q2"]["mrr@10"] == 0.0  # first relevant page at rank 11
    assert full["q2"]["recall_5"] == 0.0


def test_tuple_page_keys_are_distinct_documents() -> None:
    qrels = {"q": {("a.pdf", 1): 1, ("a.pdf", 11): 1}}
    ranked = [("a.pdf", 11), ("a.pdf", 1)]
    out = evaluate_rankings({"q": ranked}, qrels)
    assert out["ndcg@5"] == pytest.approx(1.0)
    assert evaluate_rankings({"q": [("a.pdf", 2)]}, qrels)["recall@5"] == 0.0


def test_slices_are_grouped_like_sources() -> None:
    rankings = {"q1": ["a"], "q2": ["b"]}
    qrels = {"q1": {"a": 1}, "q2": {"a": 1}}
    out = evaluate_rankings(rankings, qrels, slices={"q1": ["filings"], "q2": ["filings", "x"]})
    assert out["by_slice"]["filings"]["n"] == 2
    assert out["by_slice"]["filings"]["ndcg@5"] == pytest.approx(0.5)
    assert out["by_slice"]["x"]["ndcg@5"] == 0.0
