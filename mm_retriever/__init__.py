"""mm-retriever: multimodal page retrieval for RAG."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Main names, imported lazily so that `import mm_retriever` stays light (CLI start-up, registry).
_EXPORTS = {
    "MultimodalIndex": "mm_retriever.index",
    "IngestReport": "mm_retriever.index",
    "HybridRetriever": "mm_retriever.ranking.hybrid",
    "IndexConfig": "mm_retriever.config",
    "IngestConfig": "mm_retriever.config",
    "LegSpec": "mm_retriever.config",
    "PluginSpec": "mm_retriever.config",
    "RetrievedPage": "mm_retriever.types",
    "RetrievedFigure": "mm_retriever.types",
    "Query": "mm_retriever.protocols",
    "RRFFusion": "mm_retriever.ranking.fusion",
    "WeightedFusion": "mm_retriever.ranking.fusion",
    "LanceDBStore": "mm_retriever.store",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
