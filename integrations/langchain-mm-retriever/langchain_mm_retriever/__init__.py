"""LangChain integration of mm-retriever: a ``BaseRetriever`` over a multimodal PDF index."""

from mm_retriever.context import require

require("langchain_core.retrievers", "langchain-core", "langchain-mm-retriever")

from langchain_mm_retriever.retrievers import MMRetriever, page_to_document  # noqa: E402

__all__ = ["MMRetriever", "page_to_document"]
