"""LangChain integration of mm-retriever: a ``BaseRetriever`` over a multimodal PDF index."""

from mm_retriever.context import require

require("langchain_core.retrievers", "langchain-core", "langchain-mm-retriever")

from langchain_mm_retriever.retrievers import (  # noqa: E402
    DOCUMENT_PROMPT,
    MMRetriever,
    create_mm_retriever_tool,
    page_to_document,
)

__all__ = ["DOCUMENT_PROMPT", "MMRetriever", "create_mm_retriever_tool", "page_to_document"]
