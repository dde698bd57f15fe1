"""Choose what of the retrieved pages an LLM gets: pages, text, images, within a budget.

Image defaults follow what hosts accept. Anthropic's vision guide: an image whose long edge is
over 1568 px (or over about 1.15 megapixels) is scaled down by the API before the model sees it,
so larger images only cost latency (https://docs.claude.com/en/docs/vision). Claude Desktop
refuses an MCP tool result over 1 MiB ("result exceeds maximum length of 1048576",
https://github.com/PrefectHQ/fastmcp/issues/1036; "Tool result is too large. Maximum size is
1MB.", https://github.com/anthropics/claude-code/issues/66519), base64 images included.
``HOST_IMAGE_SIDE`` / ``HOST_IMAGE_PIXELS`` / ``HOST_MAX_BYTES`` are those limits with room to
spare; the MCP server uses them, and ``ContextBudget(max_image_bytes=...)`` applies the same
kind of cap to chat messages.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from mm_retriever.types import RetrievedPage

HOST_IMAGE_SIDE = 1568  # px, long edge (Anthropic's vision guide)
HOST_IMAGE_PIXELS = 1_150_000  # px, width x height (Anthropic's vision guide)
HOST_MAX_BYTES = 800_000  # bytes of one tool result, under Claude Desktop's 1 MiB


@dataclass(frozen=True)
class ContextBudget:
    """Limits on what goes into the LLM's context.

    Pages whose calibrated ``confidence`` is below ``min_score`` are dropped (the relevance
    floor of ``mm_retriever.ranking.relevance``), then the best ``max_pages`` are kept. Images
    are downscaled so that their longer side is at most ``max_image_side`` pixels and their area
    at most ``max_image_pixels`` (``None``: no limit) and encoded as JPEG (``image_format=
    "original"`` keeps JPEG pages JPEG and PNG crops PNG). ``max_image_bytes`` caps the base64
    size of all images together: page images and crops are taken in rank order, and those
    that no longer fit are left out and listed in ``Source.omitted``.
    """

    max_pages: int = 5
    min_score: float | None = None
    max_chars_per_page: int | None = 4000
    page_images: bool = True
    figures: bool = True
    max_figures_per_page: int = 2
    max_image_side: int | None = 1024
    max_image_pixels: int | None = None
    image_format: Literal["jpeg", "original"] = "jpeg"
    jpeg_quality: int = 85
    max_image_bytes: int | None = None  # base64 characters of all images of one call
    image_detail: str | None = None  # OpenAI's "low" | "high" | "auto"; None leaves it out

    def __post_init__(self) -> None:
        if self.max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        if self.max_image_side is not None and self.max_image_side < 16:
            raise ValueError("max_image_side must be at least 16 pixels (or None)")
        if self.max_image_pixels is not None and self.max_image_pixels < 256:
            raise ValueError("max_image_pixels must be at least 256 (or None)")
        if self.max_image_bytes is not None and self.max_image_bytes < 0:
            raise ValueError("max_image_bytes must be 0 or more (or None)")
        if self.image_format not in ("jpeg", "original"):
            raise ValueError("image_format must be 'jpeg' or 'original'")


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

    @property
    def base64_size(self) -> int:
        """Characters of the base64 text (what a message or tool result carries)."""
        return base64_size(len(self.data))


@dataclass
class Source:
    """One numbered source: a retrieved page as the LLM sees it, and how to cite it."""

    number: int
    page: RetrievedPage
    text: str
    images: list[ContextImage] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)  # labels of images left out (byte budget)

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


def base64_size(n_bytes: int) -> int:
    """Length of the base64 text of ``n_bytes`` bytes."""
    return 4 * ((n_bytes + 2) // 3)


def downscale(
    data: bytes,
    max_side: int | None,
    *,
    quality: int = 85,
    max_pixels: int | None = None,
    to_jpeg: bool = False,
) -> tuple[bytes, str]:
    """Shrink an encoded image to at most ``max_side`` px long side and ``max_pixels`` in area.

    Returns (bytes, mime). Images already small enough keep their original bytes when their
    format is kept. ``to_jpeg``: encode as JPEG (photos, pages and charts are several times
    smaller than as PNG); otherwise JPEG stays JPEG and anything else becomes PNG.
    """
    with Image.open(io.BytesIO(data)) as img:
        fmt = (img.format or "PNG").upper()
        mime = "image/jpeg" if fmt == "JPEG" or to_jpeg else "image/png"
        long = target = max(img.size)
        if max_side is not None:
            target = min(target, max_side)
        if max_pixels is not None:
            area = img.size[0] * img.size[1]
            target = min(target, int(long * (max_pixels / area) ** 0.5))
        if target >= long and fmt == ("JPEG" if mime == "image/jpeg" else "PNG"):
            return data, mime
        small = img.copy()
        if target < long:
            small.thumbnail((max(1, target), max(1, target)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if mime == "image/jpeg":
        _rgb(small).save(buf, format="JPEG", quality=quality)
    else:
        small.save(buf, format="PNG")
    return buf.getvalue(), mime


def _rgb(img: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency flattened onto white."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, "white")
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


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
    """Number the pages kept by ``budget`` and prepare their text and downscaled images.

    Images that would take the images past ``budget.max_image_bytes`` are left out (listed in
    each source's ``omitted``); smaller ones after them may still fit.
    """
    budget = budget or ContextBudget()
    left = budget.max_image_bytes
    sources: list[Source] = []
    for number, page in enumerate(select_pages(pages, budget), start=1):
        src = Source(number=number, page=page, text=_trim(page.text, budget.max_chars_per_page))
        candidates: list[tuple[str, bytes]] = []
        if budget.page_images and (raw := _page_image_bytes(page)):
            candidates.append(("page image", raw))
        if budget.figures:
            for fig in page.figures[: budget.max_figures_per_page]:
                if fig.image_bytes:
                    what = f"figure {fig.figure_index + 1}"
                    if fig.caption:
                        what += f" ({fig.caption})"
                    candidates.append((what, fig.image_bytes))
        for what, raw in candidates:
            label = f"{src.citation}: {what}"
            data, mime = downscale(
                raw,
                budget.max_image_side,
                quality=budget.jpeg_quality,
                max_pixels=budget.max_image_pixels,
                to_jpeg=budget.image_format == "jpeg",
            )
            image = ContextImage(label, data, mime)
            if left is not None:
                if image.base64_size > left:
                    src.omitted.append(label)
                    continue
                left -= image.base64_size
            src.images.append(image)
        sources.append(src)
    return sources


def omitted_note(sources: Sequence[Source]) -> str | None:
    """One line saying which images the byte budget left out, or None when none was."""
    labels = [label for src in sources for label in src.omitted]
    if not labels:
        return None
    return f"{len(labels)} image(s) left out to stay within the image budget: " + "; ".join(labels)
