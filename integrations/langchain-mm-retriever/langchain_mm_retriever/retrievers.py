"""``MMRetriever``: mm-retriever's hybrid page retrieval as a LangChain retriever.

Each retrieved page becomes one ``Document``: ``page_content`` is the page text (or the matched
chunk), ``metadata`` carries provenance, scores, the page image and the matched figure crops.

``create_mm_retriever_tool`` makes the agent tool: LangChain's ``create_retriever_tool`` with
``DOCUMENT_PROMPT``, so each page reaches the model as ``[report.pdf, p. 3]`` followed by its
text, the citation it should quote (the plain tool formats ``{page_content}`` only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.prompts import BasePromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool, create_retriever_tool
from pydantic import ConfigDict, Field, model_validator

from mm_retriever.context.files import save_figure_image, save_page_image
from mm_retriever.types import RetrievedPage

PageContent = Literal["text", "matched_text"]

#: How a tool or a chain shows one page to the model: its citation in brackets, then its text.
#: ``format_document`` fills ``{citation}`` from ``Document.metadata``.
DOCUMENT_PROMPT = PromptTemplate.from_template("[{citation}]\n{page_content}")


def page_to_document(
    page: RetrievedPage,
    *,
    page_content: PageContent = "text",
    include_image_base64: bool = False,
    include_figure_base64: bool = False,
    image_dir: str | Path | None = None,
) -> Document:
    """One retrieved page as a LangChain ``Document`` (see the package README for the fields)."""
    content = page.matched_text if page_content == "matched_text" else page.text
    image_path = save_page_image(page, image_dir) if image_dir else page.image_path
    figures: list[dict[str, Any]] = []
    for fig in page.figures:
        item: dict[str, Any] = {
            "figure_index": fig.figure_index,
            "bbox": [float(v) for v in fig.bbox],
            "caption": fig.caption,
            "inside_text": fig.inside_text,
            "score": float(fig.score),
            "image_path": save_figure_image(page, fig, image_dir) if image_dir else None,
        }
        if include_figure_base64:
            item["image_base64"] = fig.image_base64()
        figures.append(item)
    metadata: dict[str, Any] = {
        "doc_id": page.doc_id,
        "source": page.source,
        "title": page.title,
        "page": page.page_number,
        "page_index": page.page_index,
        "citation": page.citation,
        "score": float(page.score),
        "confidence": page.confidence,  # calibrated, 0-1 (None: legs not calibrated)
        "weak_match": page.weak_match,
        "leg_ranks": dict(page.leg_ranks),
        "leg_scores": {k: float(v) for k, v in page.leg_scores.items()},
        "matched_text": page.matched_text,
        "filing": page.filing,
        "section": page.section,
        "image_path": image_path,
        "image_mime": page.image_mime,
        "figures": figures,
    }
    if include_image_base64:
        metadata["image_base64"] = page.image_base64()
    return Document(
        id=f"{page.doc_id}:{page.page_index}",
        page_content=content or page.text,
        metadata=metadata,
    )


class MMRetriever(BaseRetriever):
    """Multimodal page retriever (page images + text + figures, fused) for LangChain.

    Build it from an index (a ``MultimodalIndex`` or the path of one) or from a ready
    ``HybridRetriever``::

        retriever = MMRetriever(index="./my-index", k=4)
        docs = retriever.invoke("What was revenue in the North region?")
        docs = retriever.invoke("...", k=2, filters={"source": "report.pdf"})

    ``k``, ``filters`` and ``min_score`` (drop pages whose calibrated ``confidence`` is lower)
    can be overridden per call through ``invoke`` keyword arguments.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any = Field(default=None, description="a mm_retriever HybridRetriever")
    index: Any = Field(
        default=None, description="a MultimodalIndex or its path; used when retriever is None"
    )
    retriever_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="HybridRetriever options: fusion, legs, weights, ..."
    )
    k: int = Field(default=5, ge=1, description="number of pages returned")
    filters: dict[str, Any] | None = Field(
        default=None, description='e.g. {"source": "a.pdf", "page_index": {"gte": 2}}'
    )
    min_score: float | None = Field(
        default=None, ge=0, le=1, description="relevance floor on metadata['confidence']"
    )
    page_content: PageContent = "text"
    include_image_base64: bool = False
    include_figure_base64: bool = False
    image_dir: str | None = Field(
        default=None, description="write page images and figure crops here (metadata paths)"
    )

    @model_validator(mode="after")
    def _build_retriever(self) -> MMRetriever:
        if self.retriever is None:
            if self.index is None:
                raise ValueError("MMRetriever needs `retriever` (HybridRetriever) or `index`")
            index = self.index
            if isinstance(index, str | Path):
                from mm_retriever.index import MultimodalIndex

                index = MultimodalIndex.open(index)
                self.index = index
            self.retriever = index.retriever(**self.retriever_kwargs)
        return self

    @property
    def hybrid_retriever(self) -> Any:
        """The underlying ``HybridRetriever`` (used by ``mm_retriever.context.answer``)."""
        return self.retriever

    def _to_documents(self, pages: list[RetrievedPage]) -> list[Document]:
        return [
            page_to_document(
                p,
                page_content=self.page_content,
                include_image_base64=self.include_image_base64,
                include_figure_base64=self.include_figure_base64,
                image_dir=self.image_dir,
            )
            for p in pages
        ]

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[Document]:
        pages = self.retriever.retrieve(
            query,
            k=k or self.k,
            filters=filters if filters is not None else self.filters,
            min_score=min_score if min_score is not None else self.min_score,
        )
        return self._to_documents(pages)

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[Document]:
        pages = await self.retriever.aretrieve(
            query,
            k=k or self.k,
            filters=filters if filters is not None else self.filters,
            min_score=min_score if min_score is not None else self.min_score,
        )
        return self._to_documents(pages)


def create_mm_retriever_tool(
    retriever: BaseRetriever,
    name: str = "search_pdfs",
    description: str = (
        "Search the indexed PDF documents (text, tables, charts). Returns the best pages, "
        "each headed by its citation in brackets, e.g. [report.pdf, p. 3]: quote it."
    ),
    *,
    document_prompt: BasePromptTemplate | None = None,
    document_separator: str = "\n\n",
    response_format: Literal["content", "content_and_artifact"] = "content",
) -> StructuredTool:
    """An agent tool over ``retriever`` whose output carries each page's citation.

    ``create_retriever_tool`` with ``document_prompt=DOCUMENT_PROMPT`` (pass another prompt
    to change the layout; ``response_format="content_and_artifact"`` also hands back the
    ``Document`` objects).
    """
    return create_retriever_tool(
        retriever,
        name,
        description,
        document_prompt=document_prompt or DOCUMENT_PROMPT,
        document_separator=document_separator,
        response_format=response_format,
    )
