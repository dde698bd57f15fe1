"""Retrieved pages as chat messages: OpenAI-style dicts, LangChain and LlamaIndex messages.

Every format carries the same content: a system prompt asking for cited answers, then one user
message holding, for each numbered source, its citation line and text followed by its page image
and figure crops, and finally the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mm_retriever.context.budget import (
    ContextBudget,
    ContextImage,
    Source,
    build_sources,
    omitted_note,
)
from mm_retriever.errors import require_extra
from mm_retriever.types import RetrievedPage

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from llama_index.core.llms import ChatMessage

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given: pages of documents, as text "
    "and as images (page renders and figure crops). Read numbers from charts and tables in the "
    "images when the text lacks them. Cite every statement with its source number in brackets, "
    "e.g. [1] or [2][3]. If the sources do not hold the answer, say so."
)

Part = str | ContextImage


def require(module: str, package: str, purpose: str, extra: str | None = None) -> Any:
    """Import ``module`` or raise MissingExtraError naming the install command (``extra``)."""
    return require_extra(module, package, extra, purpose)


def _sources(
    pages_or_sources: Sequence[RetrievedPage] | Sequence[Source], budget: ContextBudget | None
) -> list[Source]:
    items = list(pages_or_sources)
    if items and all(isinstance(s, Source) for s in items):
        return items  # type: ignore[return-value]
    return build_sources(items, budget)  # type: ignore[arg-type]


def source_text(source: Source) -> str:
    """The text block of one source: its citation line, then the page text and figure captions."""
    lines = [source.citation]
    if source.page.title:
        lines[0] += f" ({source.page.title})"
    lines.append(source.text or "(no text on this page; see its image)")
    captions = [f.caption for f in source.page.figures if f.caption]
    if captions:
        lines.append("Figure captions: " + " | ".join(captions))
    return "\n".join(lines)


def context_parts(question: str, sources: Sequence[Source]) -> list[Part]:
    """The user message as a neutral list of text parts and images, in order."""
    parts: list[Part] = ["Sources:"]
    for src in sources:
        parts.append(source_text(src))
        for img in src.images:
            parts.append(f"Image — {img.label}")
            parts.append(img)
    if note := omitted_note(sources):
        parts.append(note)
    parts.append(
        f"Question: {question.strip()}\nAnswer from the sources above and cite them like [1]."
    )
    return parts


def context_text(question: str, sources: Sequence[Source]) -> str:
    """The same context as plain text (for text-only models): images become their labels."""
    return "\n\n".join(
        p if isinstance(p, str) else f"<{p.label}>" for p in context_parts(question, sources)
    )


def to_openai_messages(
    question: str,
    pages: Sequence[RetrievedPage] | Sequence[Source],
    budget: ContextBudget | None = None,
    *,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> list[dict[str, Any]]:
    """OpenAI chat-completions messages: text parts and ``image_url`` parts with data URLs."""
    budget = budget or ContextBudget()
    content: list[dict[str, Any]] = []
    for part in context_parts(question, _sources(pages, budget)):
        if isinstance(part, str):
            content.append({"type": "text", "text": part})
        else:
            image_url: dict[str, Any] = {"url": part.data_url()}
            if budget.image_detail:
                image_url["detail"] = budget.image_detail
            content.append({"type": "image_url", "image_url": image_url})
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


def to_langchain_messages(
    question: str,
    pages: Sequence[RetrievedPage] | Sequence[Source],
    budget: ContextBudget | None = None,
    *,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> list[BaseMessage]:
    """``[SystemMessage, HumanMessage]`` whose content is a list of LangChain standard blocks.

    Text parts are ``{"type": "text", "text": ...}``; images ``{"type": "image", "base64": ...,
    "mime_type": ...}``, which LangChain chat models translate to their provider's format.
    """
    msgs = require("langchain_core.messages", "langchain-core", "LangChain messages", "langchain")
    blocks: list[dict[str, Any]] = []
    for part in context_parts(question, _sources(pages, budget)):
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
        else:
            blocks.append({"type": "image", "base64": part.base64(), "mime_type": part.mime_type})
    out: list[BaseMessage] = []
    if system_prompt:
        out.append(msgs.SystemMessage(content=system_prompt))
    out.append(msgs.HumanMessage(content=blocks))
    return out


def to_llamaindex_messages(
    question: str,
    pages: Sequence[RetrievedPage] | Sequence[Source],
    budget: ContextBudget | None = None,
    *,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> list[ChatMessage]:
    """``[system ChatMessage, user ChatMessage]`` with ``TextBlock`` and ``ImageBlock`` blocks."""
    llms = require("llama_index.core.llms", "llama-index-core", "LlamaIndex messages", "llamaindex")
    blocks: list[Any] = []
    for part in context_parts(question, _sources(pages, budget)):
        if isinstance(part, str):
            blocks.append(llms.TextBlock(text=part))
        else:
            blocks.append(llms.ImageBlock(image=part.data, image_mimetype=part.mime_type))
    out: list[ChatMessage] = []
    if system_prompt:
        out.append(llms.ChatMessage(role=llms.MessageRole.SYSTEM, content=system_prompt))
    out.append(llms.ChatMessage(role=llms.MessageRole.USER, blocks=blocks))
    return out
