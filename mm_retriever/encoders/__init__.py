"""Encoders: page images (ColPali family), text (sentence-transformers), images+text (CLIP/SigLIP).

Heavy libraries are imported inside the constructors, so importing this package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ColPaliEncoder": "mm_retriever.encoders.colpali",
    "SentenceTransformerEncoder": "mm_retriever.encoders.text",
    "CLIPEncoder": "mm_retriever.encoders.image_text",
    "SigLIPEncoder": "mm_retriever.encoders.image_text",
    "resolve_model_path": "mm_retriever.encoders.hub",
    "inspect_checkpoint": "mm_retriever.encoders.hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
