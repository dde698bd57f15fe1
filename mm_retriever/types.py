"""Core data types: what ingestion produces and what retrieval returns.

Coordinates: every bbox is ``(x0, y0, x1, y1)`` in PDF points (1/72 inch) in the page's own
coordinate space, origin top-left, as PyMuPDF reports them. Page indices are 0-based; page
numbers shown to people are 1-based.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

BBox = tuple[float, float, float, float]
PageKey = tuple[str, int]  # (doc_id, page_index)

TextSource = Literal["layer", "ocr", "layer+ocr", "none"]


@dataclass
class Chunk:
    """A piece of a page's text, with where it lies on the page."""

    text: str
    chunk_index: int
    bbox: BBox | None = None


@dataclass
class Figure:
    """A figure, chart or table image cropped from a page."""

    figure_index: int
    bbox: BBox
    kind: Literal["raster", "vector", "page"]
    caption: str = ""
    inside_text: str = ""
    image: Image.Image | None = None

    @property
    def text(self) -> str:
        """Caption and inside text joined: what the text model embeds for a figure."""
        return "\n".join(t for t in (self.caption, self.inside_text) if t)


@dataclass
class Page:
    """One page of a document: its rendered image, text and figures."""

    doc_id: str
    page_index: int
    width: float  # points
    height: float  # points
    text: str = ""
    text_source: TextSource = "none"
    layer_text: str = ""
    ocr_text: str = ""
    image: Image.Image | None = None
    chunks: list[Chunk] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    @property
    def key(self) -> PageKey:
        return (self.doc_id, self.page_index)


@dataclass
class Document:
    """A source file split into pages. ``doc_id`` is derived from the file's content hash."""

    doc_id: str
    source: str  # path or URI the document was read from
    pages: list[Page] = field(default_factory=list)
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.source).name


@dataclass
class LegHit:
    """One page-level hit from one retrieval leg.

    ``matched`` names what matched inside the page: chunk indices for text legs, figure indices
    for the figure leg (best first); ``matched_scores`` (when the leg fills it) holds their
    scores in the same order. ``score`` is the leg's raw score (higher is better).
    """

    doc_id: str
    page_index: int
    score: float
    rank: int = 0  # 1-based rank within the leg, filled by the leg
    matched: list[int] = field(default_factory=list)
    matched_text: str = ""
    matched_scores: list[float] = field(default_factory=list)

    @property
    def key(self) -> PageKey:
        return (self.doc_id, self.page_index)


@dataclass
class FusedHit:
    """A page after fusion: fused score plus each leg's rank and raw score."""

    doc_id: str
    page_index: int
    score: float
    leg_ranks: dict[str, int] = field(default_factory=dict)
    leg_scores: dict[str, float] = field(default_factory=dict)
    leg_hits: dict[str, LegHit] = field(default_factory=dict)

    @property
    def key(self) -> PageKey:
        return (self.doc_id, self.page_index)


@dataclass
class RetrievedFigure:
    """A figure crop that matched the query, with its provenance."""

    figure_index: int
    bbox: BBox
    caption: str
    inside_text: str
    score: float
    image_bytes: bytes | None = None  # PNG

    def image(self) -> Image.Image | None:
        return Image.open(io.BytesIO(self.image_bytes)) if self.image_bytes else None

    def image_base64(self) -> str | None:
        return base64.b64encode(self.image_bytes).decode("ascii") if self.image_bytes else None


@dataclass
class RetrievedPage:
    """A retrieved page with what a downstream LLM needs to answer from it."""

    doc_id: str
    page_index: int
    source: str
    score: float
    text: str = ""
    title: str = ""
    leg_ranks: dict[str, int] = field(default_factory=dict)
    # each ranking leg's raw score, plus "document" (the document prior's raw score, corpus-wide)
    # and "reference" (1.0: pinned as the page of a figure/table/section the question names);
    # "filing" (the filing prior's score of the document) and "section" (1.0: a page of a
    # statement the question names or needs)
    leg_scores: dict[str, float] = field(default_factory=dict)
    matched_text: str = ""
    figures: list[RetrievedFigure] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    image_path: str | None = None  # a local PNG/JPEG of the rendered page, when one exists
    image_bytes: bytes | None = field(default=None, repr=False)  # encoded page image
    image_mime: str = "image/jpeg"
    # how sure the match is, in [0, 1] (``mm_retriever.ranking.relevance``; None where the
    # index's legs are not the calibrated ones); ``weak_match``: under the default floor
    confidence: float | None = None
    weak_match: bool | None = None
    # what the document is ("NIKE, Inc. 10-K FY2019") and what the page is ("balance_sheet"),
    # as read at ingest (``mm_retriever.ranking.filing_prior``); "" when unknown
    filing: str = ""
    section: str = ""

    @property
    def page_number(self) -> int:
        """1-based page number, as people cite it."""
        return self.page_index + 1

    @property
    def key(self) -> PageKey:
        return (self.doc_id, self.page_index)

    @property
    def citation(self) -> str:
        return f"{Path(self.source).name}, p. {self.page_number}"

    def image(self) -> Image.Image | None:
        """The rendered page as a PIL image (decoded lazily)."""
        if self.image_bytes:
            return Image.open(io.BytesIO(self.image_bytes))
        if self.image_path:
            return Image.open(self.image_path)
        return None

    def image_base64(self) -> str | None:
        """The page image as base64 (the stored encoding), for LLM messages."""
        if self.image_bytes is None and self.image_path:
            self.image_bytes = Path(self.image_path).read_bytes()
        return base64.b64encode(self.image_bytes).decode("ascii") if self.image_bytes else None

    def image_data_url(self) -> str | None:
        b64 = self.image_base64()
        return f"data:{self.image_mime};base64,{b64}" if b64 else None

    def explain(self, index: Any, query: Any, **kwargs: Any) -> Any:
        """Where on this page each leg matched ``query`` (an ``explain.Explanation``)."""
        return index.explain_page(query, self.doc_id, self.page_index, **kwargs)

    def overlay_png(self, index: Any, query: Any, **kwargs: Any) -> bytes:
        """This page with the query's matches drawn over it (heat map and boxes), as PNG."""
        return index.overlay_png(query, self.doc_id, self.page_index, **kwargs)

    def to_dict(self, include_image: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (no image bytes unless asked)."""
        out: dict[str, Any] = {
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "page_index": self.page_index,
            "page_number": self.page_number,
            "score": self.score,
            "confidence": self.confidence,
            "weak_match": self.weak_match,
            "leg_ranks": self.leg_ranks,
            "leg_scores": self.leg_scores,
            "text": self.text,
            "matched_text": self.matched_text,
            "filing": self.filing,
            "section": self.section,
            "image_path": self.image_path,
            "figures": [
                {
                    "figure_index": f.figure_index,
                    "bbox": list(f.bbox),
                    "caption": f.caption,
                    "score": f.score,
                }
                for f in self.figures
            ],
        }
        if include_image:
            out["image_base64"] = self.image_base64()
        return out
