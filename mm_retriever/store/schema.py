"""Arrow schemas of the index's own tables (rows are made from ingest types in index/rows.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from mm_retriever.store.arrow import vector_type

# 1: each page's encoded image in ``pages.image``, figure PNG crops in ``figures.image``, the
#    page text also as ``layer_text`` and ``ocr_text``.
# 2: the source file once per document in ``sources``; pages and crops are rendered from it on
#    demand (``pages.image``/``figures.image`` null), ``layer_text``/``ocr_text`` left empty.
#    Rows with an image (other renderers, or ``image_store="encoded"``) still read as in 1.
SCHEMA_VERSION = 2

MANIFEST = "manifest"
DOCUMENTS = "documents"
PAGES = "pages"
FIGURES = "figures"
PENDING = "pending"
SOURCES = "sources"
DOCUMENT_TEXT = "document_text"
FILINGS = "filings"
PAGE_SECTIONS = "page_sections"
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

# The source file of a document, kept once: pages and figure crops are rendered from it on
# demand at ``dpi`` and encoded as ``image_format``/``image_quality`` (what ingestion rendered).
SOURCES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("mime", pa.string()),  # application/pdf, image/png, image/jpeg
        ("data", pa.large_binary()),
        ("dpi", pa.int32()),
        ("image_format", pa.string()),  # jpeg | png
        ("image_quality", pa.int32()),
    ]
)

# A write in progress: one row per document a writer is adding or deleting, committed before
# its first row is written and removed after its last. A marker left behind proves which rows
# belong to a write that died; only those are ever cleaned up.
# one row a document: its title and file name words, then the text of all its pages; searched
# with a full-text index by the document prior (``mm_retriever.ranking.document_prior``)
DOCUMENT_TEXT_SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string())])

# what a filing is (``mm_retriever.ingest.filing``): one row a document that is a filing
FILINGS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("company", pa.string()),
        ("form", pa.string()),  # 10-K | 10-Q | 8-K | earnings release | ...
        ("fiscal_year", pa.int32()),
        ("quarter", pa.int32()),  # 1-4 for a quarterly report, else 0
        ("period_end", pa.string()),  # ISO date
        ("tickers", pa.list_(pa.string())),
    ]
)

# what a page is (``mm_retriever.ingest.page_sections``): one row a page with a section
PAGE_SECTIONS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("section", pa.string()),  # income_statement | balance_sheet | cash_flow | notes | ...
        ("title", pa.string()),
    ]
)

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
    SOURCES: SOURCES_SCHEMA,
    DOCUMENT_TEXT: DOCUMENT_TEXT_SCHEMA,
    FILINGS: FILINGS_SCHEMA,
    PAGE_SECTIONS: PAGE_SECTIONS_SCHEMA,
    PENDING: PENDING_SCHEMA,
}


def leg_table(leg_name: str) -> str:
    """Table name of a leg: ``leg_<name>`` with dashes as underscores."""
    return LEG_PREFIX + leg_name.replace("-", "_")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
