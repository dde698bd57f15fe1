"""Shared by the examples: build or reuse an index over a folder, and an optional LLM.

The LLM is an OpenAI-compatible endpoint configured by environment variables::

    OPENAI_BASE_URL=http://localhost:8000/v1   # optional (default: OpenAI)
    OPENAI_API_KEY=...                          # required to call an LLM
    OPENAI_MODEL=gpt-4o-mini                    # required to call an LLM (a vision model is best)

Without them every example runs offline up to the point where the LLM would be called.
Client packages come from the ``examples`` extra: ``uv sync --extra examples``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

from mm_retriever.errors import MissingExtraError

DATA = Path(__file__).resolve().parent / "data"


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--folder", type=Path, default=DATA, help="PDF folder (default: %(default)s)")
    p.add_argument(
        "--index",
        type=Path,
        default=None,
        help="index folder (default: a folder per PDF folder under the system temp dir)",
    )
    p.add_argument("-k", type=int, default=4, help="pages to retrieve")
    return p


def default_index_dir(folder: Path) -> Path:
    name = "-".join(folder.resolve().parts[-2:]).replace(os.sep, "-")
    return Path(tempfile.gettempdir()) / "mm-retriever-examples" / name


def open_index(folder: Path, index_dir: Path | None = None) -> Any:
    """Open the index at ``index_dir`` (creating it) and add the folder's files.

    Files already indexed are skipped (same content hash), so a second run starts at once.
    """
    from mm_retriever.index import IndexNotFoundError, MultimodalIndex

    if not folder.is_dir():
        raise SystemExit(f"no such folder: {folder}")
    index_dir = index_dir or default_index_dir(folder)
    try:
        index = MultimodalIndex.open(index_dir)
    except IndexNotFoundError:
        index = MultimodalIndex.create(index_dir)  # default legs; unavailable models are skipped
    report = index.add([folder], progress=True)
    for path, reason in report.failed.items():
        print(f"  skipped {path}: {reason}")
    print(f"index {index_dir}: {len(index.documents())} documents, {index.num_pages()} pages")
    return index


def llm_settings() -> dict[str, str] | None:
    """``{"model", "api_key", "base_url"}`` from the environment, or None when not configured."""
    model, key = os.environ.get("OPENAI_MODEL"), os.environ.get("OPENAI_API_KEY")
    if not (model and key):
        return None
    return {"model": model, "api_key": key, "base_url": os.environ.get("OPENAI_BASE_URL", "")}


def _need(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(package, extra="examples", purpose="calling an LLM in the examples")


def langchain_chat_model(settings: dict[str, str]) -> Any:
    """``langchain_openai.ChatOpenAI`` for the configured endpoint."""
    _need("langchain_openai", "langchain-openai")
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings["model"],
        api_key=settings["api_key"],
        base_url=settings["base_url"] or None,
        temperature=0,
    )


def llamaindex_llm(settings: dict[str, str]) -> Any:
    """``OpenAILike`` (chat + function calling) for the configured endpoint."""
    _need("llama_index.llms.openai_like", "llama-index-llms-openai-like")
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=settings["model"],
        api_key=settings["api_key"],
        api_base=settings["base_url"] or "https://api.openai.com/v1",
        is_chat_model=True,
        is_function_calling_model=True,
        temperature=0,
    )


def open_client(settings: dict[str, str]) -> Any:
    _need("openai", "openai")
    from openai import OpenAI

    return OpenAI(api_key=settings["api_key"], base_url=settings["base_url"] or None)


NO_LLM = (
    "(no LLM configured: set OPENAI_API_KEY and OPENAI_MODEL, and OPENAI_BASE_URL for a "
    "non-OpenAI endpoint, then `uv sync --extra examples`, to get an answer)"
)
