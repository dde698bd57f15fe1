"""LlamaIndex integration of mm-retriever: a ``BaseRetriever`` over a multimodal PDF index."""

from mm_retriever.context import require

require("llama_index.core", "llama-index-core", "llama-index-retrievers-mm-retriever")

from llama_index.retrievers.mm_retriever.base import MMRetriever, page_to_nodes  # noqa: E402

__all__ = ["MMRetriever", "page_to_nodes"]
