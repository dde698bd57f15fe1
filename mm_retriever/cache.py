"""The cache folder (OCR results, ONNX exports, rendered page images): light to import."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$MM_RETRIEVER_CACHE``, or ``~/.cache/mm-retriever``."""
    env = os.environ.get("MM_RETRIEVER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mm-retriever"
