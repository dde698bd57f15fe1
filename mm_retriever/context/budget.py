"""Choose what of the retrieved pages an LLM gets: pages, text, images, within a budget."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mm_retriever.types import RetrievedPage


@dataclass(frozen=True)
class ContextBudget:
    """Limits on what goes into the LLM's context.

    Pages whose calibrated ``confidence`` is below ``min_score`` are dropped (the relevance
    floor of ``mm_retriever.ranking.relevance``), then the best ``max_pages`` are kept. Images
    are downscaled so that their longer side is at most ``max_image_side`` pixels before they are
    base64-encoded (``None`` keeps the stored size).
    """

    max_pages: int = 5
    min_score: float | None = None
    max_chars_per_page: int | None = 4000
    page_images: bool = True
    figures: bool = True
    max_figures_per_page: int = 2
    max_image_side: int | None = 1024
    jpeg_quality: int = 85
    image_detail: str | None = None  # OpenAI's "low" | "high" | "auto"; None leaves it out

    def __post_init__(self) -> None:
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        if self.max_image_side is not None and self.max_image_side < 16:
            raise ValueError("max_image_side must be at least 16 pixels (or None)")


@dataclass
class ContextImage:
    """An encoded image ready for a message, with the label that ties it to its source."""

    label: str
    data: bytes
    mime_type: str

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{self.base64()}"


@dataclass
class Source:
    """One numbered source: a retrieved page as the LLM sees it, and how to cite it."""

    number: int
    page: RetrievedPage
    text: str
    images: list[ContextImage] = field(default_factory=list)

    @property
    def citation(self) -> str:
        """``[1] report.pdf p. 3``: what the answer quotes and what is shown to people."""
        return cite(self.number, self.page)

    @property
    def marker(self) -> str:
        return f"[{self.number}]"


def cite(number: int, page: RetrievedPage) -> str:
    """The citation line of a page: ``[number] file name p. page number``."""
    return f"[{number}] {Path(page.source).name} p. {page.page_number}"


def downscale(data: bytes, max_side: int | None, *, quality: int = 85) -> tuple[bytes, str]:
    """Shrink an encoded image so its longer side is at most ``max_side``; return (bytes, mime).

    Images already small enough keep their original bytes. JPEG stays JPEG; anything else is
    re-encoded as PNG (figure crops are PNG).
    """
    with Image.open(io.BytesIO(data)) as img:
        fmt = (img.format or "PNG").upper()
        mime = "image/jpeg" if fmt == "JPEG" else "image/png"
        if max_side is None or max(img.size) <= max_side:
            if fmt in ("JPEG", "PNG"):
                return data, mime
            max_side = max(img.size)
        small = img.copy()
        small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if mime == "image/jpeg":
        small.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        small.save(buf, format="PNG")
    return buf.getvalue(), mime


def select_pages(pages: Sequence[RetrievedPage], budget: ContextBudget) -> list[RetrievedPage]:
    """Pages with a ``confidence`` of at least ``min_score``, best first, at most ``max_pages``."""
    if budget.min_score is not None and any(p.confidence is None for p in pages):
        from mm_retriever.errors import InvalidQueryError

        raise InvalidQueryError(
            "min_score needs a calibrated confidence, and these pages have none (their legs "
            "are not the calibrated ones; see mm_retriever.ranking.relevance)"
        )
    floor = budget.min_score
    kept = [p for p in pages if floor is None or (p.confidence or 0.0) >= floor]
    kept.sort(key=lambda p: p.score, reverse=True)
    return kept[: budget.max_pages]


def _page_image_bytes(page: RetrievedPage) -> bytes | None:
    if page.image_bytes:
        return page.image_bytes
    if page.image_path and Path(page.image_path).is_file():
        return Path(page.image_path).read_bytes()
    return None


def _trim(text: str, limit: int | None) -> str:
    text = text.strip()
    if limit is None or len(text) <= limit:
        return text
    return text[:limit].rstrip() + " …"


def build_sources(
    pages: Sequence[RetrievedPage], budget: ContextBudget | None = None
) -> list[Source]:
    """Number the pages kept by ``budget`` and prepare their text and downscaled images."""
    budget = budget or ContextBudget()
    sources: list[Source] = []
    for number, page in enumerate(select_pages(pages, budget), start=1):
        src = Source(number=number, page=page, text=_trim(page.text, budget.max_chars_per_page))
        if budget.page_images and (raw := _page_image_bytes(page)):
            data, mime = downscale(raw, budget.max_image_side, quality=budget.jpeg_quality)
            src.images.append(ContextImage(f"{src.citation}: page image", data, mime))
        if budget.figures:
            for fig in page.figures[: budget.max_figures_per_page]:
                if not fig.image_bytes:
                    continue
                data, mime = downscale(
                    fig.image_bytes, budget.max_image_side, quality=budget.jpeg_quality
                )
                what = f"figure {fig.figure_index + 1}"
                if fig.caption:
                    what += f" ({fig.caption})"
                src.images.append(ContextImage(f"{src.citation}: {what}", data, mime))
        sources.append(src)
    return sources
