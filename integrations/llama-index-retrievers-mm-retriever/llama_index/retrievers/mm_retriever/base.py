"""``MMRetriever``: mm-retriever's hybrid page retrieval as a LlamaIndex retriever.

Each retrieved page yields a ``TextNode`` (the page text), an ``ImageNode`` (the rendered page)
and one ``ImageNode`` per matched figure crop, all scored with the page's fused score and linked
to their source document (``NodeRelationship.SOURCE``) and, for images, to the page's text node
(``NodeRelationship.PARENT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import (
    ImageNode,
    NodeRelationship,
    NodeWithScore,
    ObjectType,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from PIL import Image

from mm_retriever.context.files import save_figure_image, save_page_image
from mm_retriever.protocols import Query
from mm_retriever.types import RetrievedFigure, RetrievedPage

TextMode = Literal["text", "matched_text"]
IMAGE_LEGS = ("page", "figure")
# Shown to the LLM next to a node's text; everything else stays out of prompts and embeddings.
LLM_METADATA = ("file_name", "page_label", "title", "caption")


# Metadata that depends on the query, not on the page: left out of a text node's hash so that the
# same page retrieved twice (several queries or retrievers in QueryFusionRetriever) is one node.
PER_QUERY_METADATA = frozenset(
    {
        "score",
        "confidence",
        "weak_match",
        "leg_ranks",
        "leg_scores",
        "matched_text",
        "figures",
        "figure_score",
    }
)


class PageTextNode(TextNode):
    """A ``TextNode`` whose hash ignores per-query metadata (scores, ranks, matched parts).

    LlamaIndex's fusion retrievers merge results by ``node.hash``; with scores in the metadata
    the same page would hash differently for every query. Serialises as a plain ``TextNode``.
    """

    @property
    def hash(self) -> str:
        stable = {k: v for k, v in self.metadata.items() if k not in PER_QUERY_METADATA}
        return sha256((str(self.text) + str(stable)).encode("utf-8", "surrogatepass")).hexdigest()


def _page_metadata(page: RetrievedPage) -> dict[str, Any]:
    return {
        "doc_id": page.doc_id,
        "source": page.source,
        "file_name": Path(page.source).name,
        "title": page.title,
        "page": page.page_number,
        "page_label": str(page.page_number),
        "page_index": page.page_index,
        "citation": page.citation,
        "score": float(page.score),
        "confidence": page.confidence,  # calibrated, 0-1 (None: legs not calibrated)
        "weak_match": page.weak_match,
        "leg_ranks": dict(page.leg_ranks),
        "leg_scores": {k: float(v) for k, v in page.leg_scores.items()},
    }


def _figure_text(fig: RetrievedFigure, page: RetrievedPage) -> str:
    """Caption and the text inside the figure; a label when it has neither."""
    text = "\n".join(t for t in (fig.caption, fig.inside_text) if t)
    return text or f"Figure {fig.figure_index + 1} of {page.citation}"


def _hide(metadata: dict[str, Any]) -> list[str]:
    return [key for key in metadata if key not in LLM_METADATA]


def page_to_nodes(
    page: RetrievedPage,
    *,
    text_mode: TextMode = "text",
    page_image: bool = True,
    figures: bool = True,
    embed_images: bool = True,
    image_dir: str | Path | None = None,
) -> list[NodeWithScore]:
    """A retrieved page as ``[TextNode, ImageNode (page), ImageNode per figure]`` with scores.

    ``embed_images`` puts the images as base64 in ``ImageNode.image``; ``image_dir`` writes
    them to files and sets ``ImageNode.image_path`` (the page's own image file is used when it
    has one).
    """
    score = float(page.score)
    base = _page_metadata(page)
    source = RelatedNodeInfo(
        node_id=page.doc_id,
        node_type=ObjectType.DOCUMENT,
        metadata={"source": page.source, "title": page.title},
    )
    text_id = f"{page.doc_id}:p{page.page_index}"
    parent = RelatedNodeInfo(node_id=text_id, node_type=ObjectType.TEXT)
    image_links = {NodeRelationship.SOURCE: source, NodeRelationship.PARENT: parent}
    content = (page.matched_text if text_mode == "matched_text" else page.text) or page.text

    text_meta = {
        **base,
        "kind": "page_text",
        "matched_text": page.matched_text,
        "image_path": page.image_path,
        "figures": [
            {
                "figure_index": f.figure_index,
                "bbox": [float(v) for v in f.bbox],
                "caption": f.caption,
                "score": float(f.score),
            }
            for f in page.figures
        ],
    }
    nodes = [
        NodeWithScore(
            node=PageTextNode(
                id_=text_id,
                text=content,
                metadata=text_meta,
                excluded_llm_metadata_keys=_hide(text_meta),
                excluded_embed_metadata_keys=list(text_meta),
                relationships={NodeRelationship.SOURCE: source},
            ),
            score=score,
        )
    ]

    image_path = save_page_image(page, image_dir) if image_dir else page.image_path
    if page_image and (page.image_bytes or image_path):
        meta = {**base, "kind": "page_image", "image_path": image_path}
        nodes.append(
            NodeWithScore(
                node=ImageNode(
                    id_=f"{text_id}:image",
                    text=f"Page image of {page.citation}",
                    image=page.image_base64() if embed_images else None,
                    image_path=image_path,
                    image_mimetype=page.image_mime,
                    metadata=meta,
                    excluded_llm_metadata_keys=_hide(meta),
                    excluded_embed_metadata_keys=list(meta),
                    relationships=dict(image_links),
                ),
                score=score,
            )
        )

    for fig in page.figures if figures else []:
        path = save_figure_image(page, fig, image_dir) if image_dir else None
        if not (fig.image_bytes or path):
            continue
        meta = {
            **base,
            "kind": "figure",
            "figure_index": fig.figure_index,
            "bbox": [float(v) for v in fig.bbox],
            "caption": fig.caption,
            "figure_score": float(fig.score),
            "image_path": path,
        }
        nodes.append(
            NodeWithScore(
                node=ImageNode(
                    id_=f"{text_id}:fig{fig.figure_index}",
                    text=_figure_text(fig, page),
                    image=fig.image_base64() if embed_images else None,
                    image_path=path,
                    image_mimetype="image/png",
                    metadata=meta,
                    excluded_llm_metadata_keys=_hide(meta),
                    excluded_embed_metadata_keys=list(meta),
                    relationships=dict(image_links),
                ),
                score=score,
            )
        )
    return nodes


class MMRetriever(BaseRetriever):
    """Multimodal page retriever (page images + text + figures, fused) for LlamaIndex.

    Args:
        retriever: a ready ``mm_retriever.HybridRetriever``; or give ``index``.
        index: a ``MultimodalIndex`` or the path of one.
        similarity_top_k: number of pages returned (each page gives up to 2 + figures nodes).
        filters: ``{"doc_id" | "source" | "page_index": ...}`` (see mm_retriever.store.filters).
        min_score: drop pages whose calibrated ``confidence`` (metadata, 0-1) is lower.
        text_mode: ``"text"`` (whole page) or ``"matched_text"`` (the matched chunk).
        page_images / figures: add ``ImageNode``s for page renders / figure crops.
        embed_images: put images as base64 into ``ImageNode.image``.
        image_dir: also write the images there and set ``ImageNode.image_path``.
        image_legs: legs searched for a query by image (``QueryBundle(image_path=...)``).
        retriever_kwargs: ``HybridRetriever`` options when built from ``index``.
    """

    def __init__(
        self,
        retriever: Any = None,
        *,
        index: Any = None,
        similarity_top_k: int = 5,
        filters: dict[str, Any] | None = None,
        min_score: float | None = None,
        text_mode: TextMode = "text",
        page_images: bool = True,
        figures: bool = True,
        embed_images: bool = True,
        image_dir: str | Path | None = None,
        image_legs: Sequence[str] = IMAGE_LEGS,
        retriever_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if similarity_top_k < 1:
            raise ValueError("similarity_top_k must be at least 1")
        if retriever is None:
            if index is None:
                raise ValueError("MMRetriever needs `retriever` (HybridRetriever) or `index`")
            if isinstance(index, str | Path):
                from mm_retriever.index import MultimodalIndex

                index = MultimodalIndex.open(index)
            retriever = index.retriever(**(retriever_kwargs or {}))
        self._retriever = retriever
        self._image_retriever: Any = None
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self.min_score = min_score
        self.text_mode: TextMode = text_mode
        self.page_images = page_images
        self.figures = figures
        self.embed_images = embed_images
        self.image_dir = image_dir
        self.image_legs = tuple(image_legs)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def hybrid_retriever(self) -> Any:
        """The underlying ``HybridRetriever`` (used by ``mm_retriever.context.answer``)."""
        return self._retriever

    def _query(self, query_bundle: QueryBundle) -> tuple[Any, Query]:
        """The HybridRetriever to use and the mm-retriever Query for a QueryBundle."""
        if not query_bundle.image_path:
            return self._retriever, Query(text=query_bundle.query_str)
        from mm_retriever.limits import check_image_bytes, check_image_size

        check_image_bytes(Path(query_bundle.image_path).stat().st_size)
        with Image.open(query_bundle.image_path) as img:
            check_image_size(*img.size)
            image = img.convert("RGB")
        return self._image_hybrid(), Query(text=query_bundle.query_str, image=image)

    def _image_hybrid(self) -> Any:
        """A HybridRetriever over the legs that can search by image, with the same settings.

        Those are the legs of a kind in ``image_legs`` (page, figure) that have an image model
        (a figure leg running on figure text alone cannot compare images).
        """
        if self._image_retriever is None:
            hybrid = self._retriever
            legs = hybrid.index.legs
            names = [
                name
                for name in hybrid.leg_names
                if (legs[name].kind or name) in self.image_legs and legs[name].searches_images()
            ]
            if not names:
                raise ValueError(
                    "this index has no image leg (page, or figure with an image model) to "
                    f"search by image; its legs: {', '.join(hybrid.leg_names)}"
                )
            self._image_retriever = hybrid.over_legs(names)
        return self._image_retriever

    def _nodes(self, pages: list[RetrievedPage]) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        for page in pages:
            out.extend(
                page_to_nodes(
                    page,
                    text_mode=self.text_mode,
                    page_image=self.page_images,
                    figures=self.figures,
                    embed_images=self.embed_images,
                    image_dir=self.image_dir,
                )
            )
        return out

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hybrid, query = self._query(query_bundle)
        pages = hybrid.retrieve(
            query, k=self.similarity_top_k, filters=self.filters, min_score=self.min_score
        )
        return self._nodes(pages)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hybrid, query = self._query(query_bundle)
        pages = await hybrid.aretrieve(
            query, k=self.similarity_top_k, filters=self.filters, min_score=self.min_score
        )
        return self._nodes(pages)
