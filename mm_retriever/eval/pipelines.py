"""Pipelines the harness scores: ours (each a ``MultimodalIndex`` config plus retriever options)
and peers (LlamaIndex's and LangChain's default text RAG, with the same embedding model).

Ours:

- ``page``: the ColPali-family page-image leg alone.
- ``text``: the dense text leg alone; ``bm25``: the BM25 leg alone (both on the default ingest).
- ``hybrid``: the default index (every leg whose model is available, fused) - or legs and fusion
  from options / a config file.
- ``layer-bm25``: BM25 over the PDF text layer only (the classic text-layer baseline).
- ``ocr-bm25`` / ``ocr-dense``: BM25 / dense over OCR of the rendered page only (no text layer).

Peers (labelled as such in reports): ``llamaindex`` (SimpleDirectoryReader + VectorStoreIndex,
default chunking) and ``langchain`` (PyPDFLoader + RecursiveCharacterTextSplitter +
EnsembleRetriever of BM25 and an in-memory vector store, weights 0.5/0.5).

Every pipeline answers page-level: ``search`` returns ``(file name, page_index)`` best first.
"""

from __future__ import annotations

from typing import Any

from mm_retriever.eval.ours import RAW_QUERY, OursPipeline, make_ours
from mm_retriever.eval.peers import LangChainPipeline, LlamaIndexPipeline, prepare_nltk_data
from mm_retriever.eval.pipeline_base import (
    OURS,
    PEERS,
    PIPELINES,
    BuildStats,
    Pipeline,
    PipelineUnavailable,
    Scope,
)

__all__ = [
    "OURS",
    "PEERS",
    "PIPELINES",
    "RAW_QUERY",
    "BuildStats",
    "LangChainPipeline",
    "LlamaIndexPipeline",
    "OursPipeline",
    "Pipeline",
    "PipelineUnavailable",
    "Scope",
    "make_ours",
    "make_pipeline",
    "prepare_nltk_data",
]


def make_pipeline(name: str, **options: Any) -> Pipeline:
    """A pipeline by name (see ``PIPELINES``); options as for ``make_ours`` (peers: text_model)."""
    if name == "llamaindex":
        return LlamaIndexPipeline(options.get("text_model"), options.get("device", "auto"))
    if name == "langchain":
        return LangChainPipeline(options.get("text_model"), options.get("device", "auto"))
    return make_ours(name, **options)
