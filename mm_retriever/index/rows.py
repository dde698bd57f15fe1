"""Rows of the index's tables made from ingested documents and pages (what the writer adds).

The schemas live in :mod:`mm_retriever.store.schema`; this module turns ingest's ``Document`` /
``Page`` values into rows of them, so that ``store/`` never imports ``ingest/``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mm_retriever.errors import IngestError
from mm_retriever.store.schema import now_iso
from mm_retriever.types import Document, Page


def document_row(doc: Document, n_pages: int) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "source": doc.source,
        "title": doc.title,
        "n_pages": n_pages,
        "added_at": now_iso(),
        "metadata": json.dumps(doc.metadata, default=str, sort_keys=True),
    }


def source_rows(
    doc_id: str, path: str | Path, dpi: int, image_format: str = "jpeg", quality: int = 85
) -> list[dict]:
    """The ``sources`` row of a document: its file's bytes once, with the render settings.

    Write it with the first ``pages`` rows (before the ``documents`` row, so the commit rule
    holds); ``page_rows``/``figure_rows`` then leave their images out (``images=False``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    from mm_retriever.ingest.files import PDF_SUFFIXES  # ingest (PyMuPDF) only when writing

    mime = "application/pdf" if suffix in PDF_SUFFIXES else f"image/{suffix.lstrip('.')}"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest()[:16] != doc_id:  # doc ids are content hashes
        raise IngestError(str(path), "the file changed while it was being indexed; add it again")
    return [
        {
            "doc_id": doc_id,
            "mime": mime.replace("image/jpg", "image/jpeg"),
            "data": data,
            "dpi": dpi,
            "image_format": image_format,
            "image_quality": quality,
        }
    ]


def page_rows(
    pages: Sequence[Page], image_format: str = "jpeg", quality: int = 85, images: bool = True
) -> list[dict]:
    """Rows of the ``pages`` table: the page text once (``text``; ``layer_text``/``ocr_text``
    stay empty). ``images``: encode each page image here (JPEG or PNG); False when the
    document's ``sources`` row is kept and pages are rendered from it on demand."""
    from mm_retriever.ingest import encode_image  # ingest (PyMuPDF) only when writing

    mime = "image/png" if image_format == "png" else "image/jpeg"
    return [
        {
            "doc_id": p.doc_id,
            "page_index": p.page_index,
            "width": p.width,
            "height": p.height,
            "text": p.text,
            "layer_text": "",
            "ocr_text": "",
            "text_source": p.text_source,
            "image": encode_image(p.image, image_format, quality) if images and p.image else None,
            "image_mime": mime,
        }
        for p in pages
    ]


def figure_rows(pages: Sequence[Page], images: bool = True) -> list[dict]:
    """Rows of the ``figures`` table; crops stored as PNG (``images``), or cut again from the
    rendered page on demand (False: the document's ``sources`` row is kept)."""
    from mm_retriever.ingest import encode_image  # ingest (PyMuPDF) only when writing

    return [
        {
            "doc_id": p.doc_id,
            "page_index": p.page_index,
            "figure_index": f.figure_index,
            "bbox": list(f.bbox),
            "kind": f.kind,
            "caption": f.caption,
            "inside_text": f.inside_text,
            "image": encode_image(f.image, "png") if images and f.image is not None else None,
        }
        for p in pages
        for f in p.figures
    ]
