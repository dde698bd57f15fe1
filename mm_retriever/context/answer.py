"""``answer(question, retriever, llm)``: retrieve pages, build the context, ask any LLM.

The LLM is either a LangChain chat model (or plain LLM) or a LlamaIndex LLM; which one is told by
``isinstance`` against the framework's base classes. A framework's classes are only looked up when
it is already imported (an object of its class cannot exist otherwise), so neither framework is
imported here on its own.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mm_retriever.context.budget import ContextBudget, Source, build_sources
from mm_retriever.context.messages import (
    DEFAULT_SYSTEM_PROMPT,
    context_text,
    to_langchain_messages,
    to_llamaindex_messages,
)
from mm_retriever.types import RetrievedPage

LLMKind = Literal["langchain-chat", "langchain-llm", "llamaindex"]
_CITED = re.compile(r"\[(\d+)\]")


@dataclass
class Answer:
    """The LLM's answer, the numbered sources it was given, and the exact messages sent."""

    question: str
    text: str
    sources: list[Source]
    messages: list[Any] = field(default_factory=list)

    @property
    def citations(self) -> list[str]:
        """Citation lines of every source given, e.g. ``[1] report.pdf p. 3``."""
        return [s.citation for s in self.sources]

    @property
    def cited(self) -> list[Source]:
        """The sources the answer refers to by ``[n]``, in order of first mention."""
        by_number = {s.number: s for s in self.sources}
        seen: list[Source] = []
        for m in _CITED.finditer(self.text):
            src = by_number.get(int(m.group(1)))
            if src is not None and src not in seen:
                seen.append(src)
        return seen

    def __str__(self) -> str:
        return self.text


def llm_kind(llm: Any) -> LLMKind:
    """Which framework ``llm`` belongs to; TypeError for anything else."""
    if "langchain_core" in sys.modules:
        from langchain_core.language_models import BaseChatModel, BaseLanguageModel

        if isinstance(llm, BaseChatModel):
            return "langchain-chat"
        if isinstance(llm, BaseLanguageModel):
            return "langchain-llm"
    if "llama_index.core" in sys.modules:
        from llama_index.core.llms import LLM

        if isinstance(llm, LLM):
            return "llamaindex"
    raise TypeError(
        f"llm must be a LangChain chat model or a LlamaIndex LLM, got {type(llm).__name__}"
    )


def _pages(
    question: str,
    retriever: Any,
    k: int,
    filters: Mapping[str, Any] | None,
) -> list[RetrievedPage]:
    if isinstance(retriever, Sequence) and all(isinstance(p, RetrievedPage) for p in retriever):
        return list(retriever)
    hybrid = getattr(retriever, "hybrid_retriever", retriever)
    if filters is None:  # an integration's MMRetriever may carry default filters
        filters = getattr(retriever, "filters", None) if hybrid is not retriever else None
    if not hasattr(hybrid, "retrieve"):
        raise TypeError(
            "retriever must be a HybridRetriever, an MMRetriever of an integration, or a list "
            f"of RetrievedPage; got {type(retriever).__name__}"
        )
    return hybrid.retrieve(question, k=k, filters=filters)


async def _apages(
    question: str, retriever: Any, k: int, filters: Mapping[str, Any] | None
) -> list[RetrievedPage]:
    hybrid = getattr(retriever, "hybrid_retriever", retriever)
    if filters is None and hybrid is not retriever:
        filters = getattr(retriever, "filters", None)
    if hasattr(hybrid, "aretrieve"):
        return await hybrid.aretrieve(question, k=k, filters=filters)
    return _pages(question, retriever, k, filters)


def _prepare(
    question: str, pages: list[RetrievedPage], llm: Any, budget: ContextBudget, system: str | None
) -> tuple[LLMKind, list[Source], Any]:
    kind = llm_kind(llm)
    sources = build_sources(pages, budget)
    if kind == "langchain-chat":
        payload: Any = to_langchain_messages(question, sources, budget, system_prompt=system)
    elif kind == "llamaindex":
        payload = to_llamaindex_messages(question, sources, budget, system_prompt=system)
    else:  # a text-only LangChain LLM gets one prompt string
        payload = "\n\n".join(x for x in (system, context_text(question, sources)) if x)
    return kind, sources, payload


def _text(kind: LLMKind, response: Any) -> str:
    if kind == "llamaindex":
        return str(response.message.content or "")
    if isinstance(response, str):
        return response
    return str(response.text)


def answer(
    question: str,
    retriever: Any,
    llm: Any,
    *,
    k: int | None = None,
    budget: ContextBudget | None = None,
    filters: Mapping[str, Any] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> Answer:
    """Retrieve pages for ``question``, send them (text + images) to ``llm``, return the answer.

    ``retriever``: a HybridRetriever, either integration's MMRetriever, or already retrieved
    pages. ``llm``: any LangChain chat model / LLM or LlamaIndex LLM. ``k`` defaults to the
    budget's ``max_pages``.
    """
    budget = budget or ContextBudget()
    pages = _pages(question, retriever, k or budget.max_pages, filters)
    kind, sources, payload = _prepare(question, pages, llm, budget, system_prompt)
    response = llm.chat(payload) if kind == "llamaindex" else llm.invoke(payload)
    messages = payload if isinstance(payload, list) else [payload]
    return Answer(question, _text(kind, response), sources, messages)


async def aanswer(
    question: str,
    retriever: Any,
    llm: Any,
    *,
    k: int | None = None,
    budget: ContextBudget | None = None,
    filters: Mapping[str, Any] | None = None,
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
) -> Answer:
    """Async ``answer``: ``aretrieve`` then ``ainvoke`` / ``achat``."""
    budget = budget or ContextBudget()
    if isinstance(retriever, Sequence):
        pages = _pages(question, retriever, k or budget.max_pages, filters)
    else:
        pages = await _apages(question, retriever, k or budget.max_pages, filters)
    kind, sources, payload = _prepare(question, pages, llm, budget, system_prompt)
    if kind == "llamaindex":
        response = await llm.achat(payload)
    else:
        response = await llm.ainvoke(payload)
    messages = payload if isinstance(payload, list) else [payload]
    return Answer(question, _text(kind, response), sources, messages)
