"""LlamaIndex integration of mm-retriever: a ``BaseRetriever`` over a multimodal PDF index."""

from mm_retriever.context import require

require("llama_index.core", "llama-index-core", "llama-index-retrievers-mm-retriever")

from llama_index.retrievers.mm_retriever.base import (  # noqa: E402
    MMRetriever,
    PageTextNode,
    metadata_filters_to_mm,
    page_to_nodes,
)

__all__ = ["MMRetriever", "PageTextNode", "metadata_filters_to_mm", "page_to_nodes"]
