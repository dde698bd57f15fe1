"""Retrieval legs: page images (ColPali), dense text, BM25, figures (CLIP/SigLIP + text).

Imported lazily: ``from mm_retriever.legs import TextRetriever`` loads only that leg
(``mm_retriever.retrievers``, the old name, still works).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PageImageRetriever": "mm_retriever.legs.page",
    "TextRetriever": "mm_retriever.legs.text",
    "BM25Retriever": "mm_retriever.legs.bm25",
    "FigureRetriever": "mm_retriever.legs.figure",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
