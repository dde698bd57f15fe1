"""Arrow schemas of the index's own tables, and builders of their rows from ingest types."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from mm_retriever.store.arrow import vector_type
from mm_retriever.types import Document, Page

SCHEMA_VERSION = 1

MANIFEST = "manifest"
DOCUMENTS = "documents"
PAGES = "pages"
FIGURES = "figures"
PENDING = "pending"
LEG_PREFIX = "leg_"

MANIFEST_SCHEMA = pa.schema([("key", pa.string()), ("value", pa.string())])

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("n_pages", pa.int32()),
        ("added_at", pa.string()),  # ISO 8601, UTC
        ("metadata", pa.string()),  # JSON object
    ]
)

PAGES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("width", pa.float32()),
        ("height", pa.float32()),
        ("text", pa.string()),
        ("layer_text", pa.string()),
        ("ocr_text", pa.string()),
        ("text_source", pa.string()),
        ("image", pa.binary()),
        ("image_mime", pa.string()),
    ]
)

FIGURES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("figure_index", pa.int32()),
        ("bbox", vector_type(4, "float32")),
        ("kind", pa.string()),
        ("caption", pa.string()),
        ("inside_text", pa.string()),
        ("image", pa.binary()),  # PNG
    ]
)

# A write in progress: one row per document a writer is adding or deleting, committed before
# its first row is written and removed after its last. A marker left behind proves which rows
# belong to a write that died; only those are ever cleaned up.
PENDING_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("op", pa.string()),  # "add" | "delete"
        ("started_at", pa.string()),  # ISO 8601, UTC
        ("owner", pa.string()),  # host:pid of the writer
    ]
)

BASE_SCHEMAS = {
    MANIFEST: MANIFEST_SCHEMA,
    DOCUMENTS: DOCUMENTS_SCHEMA,
    PAGES: PAGES_SCHEMA,
    FIGURES: FIGURES_SCHEMA,
    PENDING: PENDING_SCHEMA,
}


def leg_table(leg_name: str) -> str:
    """Table name of a leg: ``leg_<name>`` with dashes as underscores."""
    return LEG_PREFIX + leg_name.replace("-", "_")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def document_row(doc: Document, n_pages: int) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "source": doc.source,
        "title": doc.title,
        "n_pages": n_pages,
        "added_at": now_iso(),
        "metadata": json.dumps(doc.metadata, default=str, sort_keys=True),
    }


def page_rows(pages: Sequence[Page], image_format: str = "jpeg", quality: int = 85) -> list[dict]:
    """Rows of the ``pages`` table; page images are encoded once here (JPEG or PNG)."""
    from mm_retriever.ingest import encode_image

    mime = "image/png" if image_format == "png" else "image/jpeg"
    return [
        {
            "doc_id": p.doc_id,
            "page_index": p.page_index,
            "width": p.width,
            "height": p.height,
            "text": p.text,
            "layer_text": p.layer_text,
            "ocr_text": p.ocr_text,
            "text_source": p.text_source,
            "image": encode_image(p.image, image_format, quality) if p.image else None,
            "image_mime": mime,
        }
        for p in pages
    ]


def figure_rows(pages: Sequence[Page]) -> list[dict]:
    """Rows of the ``figures`` table; crops stored as PNG."""
    from mm_retriever.ingest import encode_image

    return [
        {
            "doc_id": p.doc_id,
            "page_index": p.page_index,
            "figure_index": f.figure_index,
            "bbox": list(f.bbox),
            "kind": f.kind,
            "caption": f.caption,
            "inside_text": f.inside_text,
            "image": encode_image(f.image, "png") if f.image is not None else None,
        }
        for p in pages
        for f in p.figures
    ]
