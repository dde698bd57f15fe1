"""Evaluation harness: data sets, metrics, pipelines, runner and reports.

Light to import: heavy parts (models, OCR, LanceDB, peers) load lazily inside the pipelines.
"""

from mm_retriever.eval.metrics import (
    evaluate_rankings,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

__all__ = ["evaluate_rankings", "mrr_at_k", "ndcg_at_k", "recall_at_k"]
