"""Write what a filing and its pages are (``filings``, ``page_sections``) from the stored page
text: at ingest (the writers, before a document's commit) and for older indexes (``migrate``).
The fields are read by :mod:`mm_retriever.ingest.filing` and
:mod:`mm_retriever.ingest.page_sections`; :mod:`mm_retriever.ranking.filing_prior` ranks with
them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mm_retriever.ingest.filing import read_filing
from mm_retriever.ingest.page_sections import page_sections
from mm_retriever.store import DOCUMENTS, PAGES
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause
from mm_retriever.store.schema import (
    FILINGS,
    FILINGS_SCHEMA,
    PAGE_SECTIONS,
    PAGE_SECTIONS_SCHEMA,
)

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore


def filing_rows(doc_id: str, page_texts: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """The ``filings`` row (none for a document that is not a filing) and the
    ``page_sections`` rows (pages with a section) of one document from its page texts."""
    fields = read_filing(page_texts)
    filings = [fields.as_row(doc_id)] if fields is not None else []
    sections = [
        {"doc_id": doc_id, "page_index": i, "section": s.section, "title": s.title}
        for i, s in enumerate(page_sections(page_texts))
        if s.section
    ]
    return filings, sections


def write_filing_fields(store: LanceDBStore, doc_ids: Sequence[str]) -> int:
    """Write the ``filings`` and ``page_sections`` rows of ``doc_ids`` from their rows in
    ``pages`` (a writer's job, before the documents' commit). Returns the documents read."""
    if not doc_ids:
        return 0
    rows = store.query(
        PAGES,
        where_clause({"doc_id": list(doc_ids)}, PAGE_COLUMNS),
        ["doc_id", "page_index", "text"],
    ).to_pylist()
    texts: dict[str, list[tuple[int, str]]] = {d: [] for d in doc_ids}
    for r in rows:
        texts[r["doc_id"]].append((int(r["page_index"]), r["text"] or ""))
    filings: list[dict] = []
    sections: list[dict] = []
    for d in doc_ids:
        f, s = filing_rows(d, [t for _, t in sorted(texts[d])])
        filings += f
        sections += s
    if filings:
        store.add(FILINGS, filings, FILINGS_SCHEMA)
    if sections:
        store.add(PAGE_SECTIONS, sections, PAGE_SECTIONS_SCHEMA)
    return len(doc_ids)


def backfill_filing_fields(store: LanceDBStore, batch: int = 32) -> int:
    """Read the filing fields and page sections of committed documents that have neither
    (``migrate``; under the writer lock). Returns the documents read."""
    have: set[str] = set()
    for name in (FILINGS, PAGE_SECTIONS):
        if store.table(name) is not None:
            have |= set(store.query(name, None, ["doc_id"]).column("doc_id").to_pylist())
    done = store.query(DOCUMENTS, None, ["doc_id"]).column("doc_id").to_pylist()
    missing = [d for d in done if d not in have]  # (a document with neither is read again)
    return sum(
        write_filing_fields(store, missing[start : start + batch])
        for start in range(0, len(missing), batch)
    )
