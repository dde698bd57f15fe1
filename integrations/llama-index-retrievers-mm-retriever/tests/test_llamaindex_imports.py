"""Without llama-index-core the package says how to install it (no silent fallback)."""

from __future__ import annotations

import importlib
import sys

import pytest

from mm_retriever.errors import MissingExtraError


def test_missing_llama_index_core_names_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("llama_index.retrievers.mm_retriever")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="uv pip install llama-index-core"):
        importlib.import_module("llama_index.retrievers.mm_retriever")
