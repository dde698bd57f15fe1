"""Bring an index to the current storage layout: schema 1 -> 2 (``mm-retriever migrate``).

Schema 1 stored every page as an encoded image, every figure crop as a PNG and the page text
three times. Schema 2 keeps a document's source file once (``sources``) and renders pages and
crops from it on demand. Migrating:

1. marks the index schema 2 (an older mm-retriever then refuses it instead of misreading it)
   and creates the ``sources`` table; documents added from then on are kept compact;
2. empties the duplicate text columns (``layer_text``, ``ocr_text``) of every page;
3. for each document whose source file is found (its recorded path, or a file with the same
   content under ``sources``) and renders as its stored first page did, writes its
   ``sources`` row, then drops its stored page images and crops;
4. writes the ``document_text`` row (the document prior's text) of every document without one,
   and its filing fields and page sections (``filings``, ``page_sections``: the filing prior's);
5. compacts the tables, builds their search indexes and deletes old versions, so the space is
   freed.

Every step is idempotent and leaves a readable index: a document is switched to its source
only after the source row is committed, and rows with stored images are read as stored. An
interrupted migration is finished by running it again.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mm_retriever.errors import IngestError
from mm_retriever.index.filing_fields import backfill_filing_fields
from mm_retriever.index.rows import source_rows
from mm_retriever.ranking.document_prior import backfill_document_texts
from mm_retriever.store import FIGURES, PAGES, SCHEMA_VERSION, SOURCES
from mm_retriever.store.filters import quote_string
from mm_retriever.store.schema import DOCUMENT_TEXT, FILINGS, PAGE_SECTIONS, SOURCES_SCHEMA

if TYPE_CHECKING:
    from mm_retriever.config import IngestConfig
    from mm_retriever.index.lifecycle import MultimodalIndex, OptimizeReport

log = logging.getLogger(__name__)

# mean absolute difference (0-255 levels) allowed between a document's stored first page and
# the same page rendered from its source: JPEG of the same render is identical; another
# PyMuPDF version may anti-alias slightly differently
MAX_PIXEL_DIFFERENCE = 2.0


@dataclass
class MigrationReport:
    """What ``MultimodalIndex.migrate`` did."""

    schema_before: int
    schema_after: int
    converted: list[str] = field(default_factory=list)  # documents now kept as their source
    kept: dict[str, str] = field(default_factory=dict)  # doc_id -> why its images stay stored
    text_cleared: int = 0  # pages whose duplicate text columns were emptied
    document_texts: int = 0  # documents given their document_text row
    filing_fields: int = 0  # documents read for their filing fields and page sections
    optimize: OptimizeReport | None = None


def find_sources(index: MultimodalIndex, folders: Iterable[str | Path] = ()) -> dict[str, Path]:
    """doc_id -> a file with that content: the path each document was added from if it is
    unchanged, else any file under ``folders`` (files or folders, searched recursively)."""
    from mm_retriever.ingest.files import document_id, iter_files

    wanted = {d["doc_id"]: d["source"] for d in index.documents()}
    found: dict[str, Path] = {}
    for doc_id, source in wanted.items():
        path = Path(source)
        try:
            if path.is_file() and document_id(path) == doc_id:
                found[doc_id] = path
        except OSError:
            continue
    if len(found) < len(wanted):
        for path in iter_files(folders):
            try:
                doc_id = document_id(path)
            except OSError:
                continue
            if doc_id in wanted:
                found.setdefault(doc_id, path)
    return found


def migrate_index(
    index: MultimodalIndex,
    sources: Iterable[str | Path] = (),
    *,
    keep_versions_for: timedelta | float = timedelta(0),
) -> MigrationReport:
    """Migrate ``index`` to schema ``SCHEMA_VERSION`` (see the module docstring)."""
    store = index.store
    ingest = index.config.ingest
    found = find_sources(index, sources)
    with index._writing():
        manifest = index.manifest()
        report = MigrationReport(int(manifest.get("schema_version", 0)), SCHEMA_VERSION)
        if report.schema_before < 2:
            store.ensure_table(SOURCES, SOURCES_SCHEMA)
            tables = sorted({*(manifest.get("tables") or ()), SOURCES})
            store.write_manifest({"schema_version": SCHEMA_VERSION, "tables": tables})
        pages = store.table(PAGES)
        if pages is not None:
            duplicate = "layer_text != '' OR ocr_text != ''"
            report.text_cleared = pages.count_rows(duplicate)
            if report.text_cleared:
                pages.update(where=duplicate, values={"layer_text": "", "ocr_text": ""})
        for doc in index.documents():
            why = _convert(index, doc["doc_id"], found.get(doc["doc_id"]), ingest)
            if why is None:
                report.converted.append(doc["doc_id"])
            elif why:
                report.kept[doc["doc_id"]] = why
        report.document_texts = backfill_document_texts(store)
        report.filing_fields = backfill_filing_fields(store)
        tables = set(index.manifest().get("tables") or ())
        added = {t for t in (DOCUMENT_TEXT, FILINGS, PAGE_SECTIONS) if store.has_table(t)}
        if added - tables:
            store.write_manifest({"tables": sorted(tables | added)})
    index.page_images.clear()
    report.optimize = index.optimize(keep_versions_for=keep_versions_for)
    return report


def _convert(
    index: MultimodalIndex, doc_id: str, path: Path | None, ingest: IngestConfig
) -> str | None:
    """Switch one document to its source file. None: done; "": nothing to do (no stored
    images); else why its stored images stay."""
    store = index.store
    where = f"doc_id = {quote_string(doc_id)}"
    with_image = f"{where} AND image IS NOT NULL"
    if not store.count(PAGES, with_image) + store.count(FIGURES, with_image):
        return ""
    if ingest.renderer != "pymupdf":
        return f"its pages were rendered by {ingest.renderer}; sources are rendered by PyMuPDF"
    written = not store.count(SOURCES, where)
    if written:
        if path is None:
            return "its source file was not found (pass its folder with --sources)"
        try:
            rows = source_rows(doc_id, path, ingest.dpi, ingest.image_format, ingest.image_quality)
        except (OSError, IngestError) as e:
            return f"its source file could not be read ({e})"
        store.add(SOURCES, rows, SOURCES_SCHEMA)
    # checked while the stored first page exists (a run interrupted after dropping the page
    # images had checked it already: only its crops are left to drop)
    if written or store.count(PAGES, f"{with_image} AND page_index = 0"):
        index.page_images.clear()  # it may remember the document as having no source
        difference = _first_page_difference(index, doc_id)
        if difference is None or difference > MAX_PIXEL_DIFFERENCE:
            store.table(SOURCES).delete(where)
            index.page_images.clear()
            if difference is None:
                return "its first page could not be compared with a render of its source file"
            return (
                f"its source renders differently from the stored page (mean difference "
                f"{difference:.1f} levels; another PyMuPDF version?)"
            )
    for name in (PAGES, FIGURES):  # the source row is committed: the images can go
        table = store.table(name)
        if table is not None and table.count_rows(with_image):
            table.update(where=where, values_sql={"image": "NULL"})
    return None


def _first_page_difference(index: MultimodalIndex, doc_id: str) -> float | None:
    """Mean absolute pixel difference between the stored first page and its render from the
    source (None: no stored first page, no render, or a different size)."""
    import numpy as np
    from PIL import Image

    where = f"doc_id = {quote_string(doc_id)} AND page_index = 0"
    rows = index.store.query(PAGES, where, ["image"], limit=1).to_pylist()
    rendered = index.page_images.render_encoded(doc_id, 0)
    if not rows or not rows[0]["image"] or rendered is None:
        return None
    a, b = (
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)
        for data in (rows[0]["image"], rendered[0])
    )
    if a.shape != b.shape:
        return None
    return float(np.abs(a - b).mean())
