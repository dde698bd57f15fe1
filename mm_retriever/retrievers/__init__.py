"""The old name of :mod:`mm_retriever.legs`: ``from mm_retriever.retrievers import X`` works."""

from __future__ import annotations

import importlib
from typing import Any

from mm_retriever.legs import _EXPORTS

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
