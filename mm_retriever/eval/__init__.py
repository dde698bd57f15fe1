"""Evaluation harness: data sets, metrics, pipelines, runner and reports (extra ``eval``).

Light to import: the metrics (ir-measures) and heavy parts (models, OCR, LanceDB, peers) load
when used, so the CLI starts without the ``eval`` extra and ``mm-retriever eval`` names it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_rankings": "mm_retriever.eval.metrics",
    "mrr_at_k": "mm_retriever.eval.metrics",
    "ndcg_at_k": "mm_retriever.eval.metrics",
    "recall_at_k": "mm_retriever.eval.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
