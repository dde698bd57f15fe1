"""What an LLM consumes from retrieved pages: budgeted sources, chat messages, cited answers."""

from mm_retriever.context.answer import Answer, aanswer, answer, llm_kind
from mm_retriever.context.budget import (
    ContextBudget,
    ContextImage,
    Source,
    build_sources,
    cite,
    downscale,
    omitted_note,
    select_pages,
)
from mm_retriever.context.messages import (
    DEFAULT_SYSTEM_PROMPT,
    context_parts,
    context_text,
    require,
    to_langchain_messages,
    to_llamaindex_messages,
    to_openai_messages,
)

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "Answer",
    "ContextBudget",
    "ContextImage",
    "Source",
    "aanswer",
    "answer",
    "build_sources",
    "cite",
    "context_parts",
    "context_text",
    "downscale",
    "llm_kind",
    "omitted_note",
    "require",
    "select_pages",
    "to_langchain_messages",
    "to_llamaindex_messages",
    "to_openai_messages",
]
