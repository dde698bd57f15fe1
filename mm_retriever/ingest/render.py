"""Page images: rendering (PyMuPDF or pdf2image/poppler) and encoding."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
from PIL import Image

from mm_retriever.errors import MissingExtraError


def render_page(
    page: pymupdf.Page, dpi: int, clip: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """Render a PDF page (or only its ``clip`` rectangle, in points) to an RGB image at
    ``dpi`` with PyMuPDF (annotations included)."""
    pix = page.get_pixmap(dpi=dpi, clip=clip, alpha=False, colorspace=pymupdf.csRGB)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def render_pdf2image(path: str | Path, first: int, last: int, dpi: int) -> list[Image.Image]:
    """Render pages ``first..last`` (0-based, inclusive) with poppler's pdftoppm via pdf2image."""
    try:
        from pdf2image import convert_from_path
        from pdf2image.exceptions import PDFInfoNotInstalledError
    except ImportError as e:  # pragma: no cover - pdf2image is a core dependency
        raise MissingExtraError("pdf2image", purpose="the pdf2image renderer") from e
    try:
        images = convert_from_path(str(path), dpi=dpi, first_page=first + 1, last_page=last + 1)
    except PDFInfoNotInstalledError as e:
        raise RuntimeError(
            "the pdf2image renderer needs poppler (pdftoppm): install poppler-utils "
            "(apt-get install poppler-utils / brew install poppler) or use renderer='pymupdf'"
        ) from e
    return [im.convert("RGB") for im in images]


def fit_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize ``image`` to ``size`` when they differ by rounding only (a pixel or two)."""
    if image.size == size:
        return image
    if abs(image.width - size[0]) <= 2 and abs(image.height - size[1]) <= 2:
        return image.resize(size, Image.Resampling.BILINEAR)
    return image


def pixmap_size(page: pymupdf.Page, dpi: int) -> tuple[int, int]:
    """The pixel size PyMuPDF gives ``page`` at ``dpi`` (without rendering it)."""
    irect = (page.rect * pymupdf.Matrix(dpi / 72, dpi / 72)).irect
    return irect.width, irect.height


def encode_image(image: Image.Image, fmt: str = "jpeg", quality: int = 85) -> bytes:
    """Encode a PIL image as JPEG (``quality``) or PNG bytes."""
    fmt = fmt.lower()
    buf = io.BytesIO()
    if fmt in {"jpeg", "jpg"}:
        rgb = image if image.mode in {"RGB", "L"} else image.convert("RGB")
        rgb.save(buf, format="JPEG", quality=quality, optimize=False)
    elif fmt == "png":
        image.save(buf, format="PNG")
    else:
        raise ValueError(f"unsupported image format '{fmt}': use 'jpeg' or 'png'")
    return buf.getvalue()
