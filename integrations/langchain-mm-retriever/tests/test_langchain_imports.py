"""Without langchain-core the package says how to install it (no silent fallback)."""

from __future__ import annotations

import importlib
import sys

import pytest

from mm_retriever.errors import MissingExtraError


def test_missing_langchain_core_names_the_install_command(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("langchain_mm_retriever")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # as if not installed
    with pytest.raises(MissingExtraError, match="uv pip install langchain-core"):
        importlib.import_module("langchain_mm_retriever")
