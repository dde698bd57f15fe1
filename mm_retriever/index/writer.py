"""The write transaction: add files to an index, one committed document at a time.

Everything here runs under the store's writer lock (``IndexWriter.add``). For each new file:
a pending marker, the rows of ``pages``, ``figures`` and every leg table, the ``documents`` row
(the commit marker), the marker removed (see ``mm_retriever.store.lancedb_store``). A failure
removes what was written for that file; a crash leaves the marker for the next writer.
Rows of several documents may share one write (their markers are all set before it);
documents are committed in file order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_retriever import faults
from mm_retriever.config import IndexConfig, IngestConfig
from mm_retriever.errors import IngestError
from mm_retriever.index.filing_fields import write_filing_fields
from mm_retriever.index.rows import document_row, figure_rows, page_rows, source_rows
from mm_retriever.progress import step
from mm_retriever.protocols import Leg
from mm_retriever.ranking.document_prior import ensure_document_text_index, write_document_texts
from mm_retriever.store import DOCUMENTS, FIGURES, PAGES, SOURCES, LanceDBStore, leg_table
from mm_retriever.store.schema import (
    DOCUMENTS_SCHEMA,
    FIGURES_SCHEMA,
    PAGES_SCHEMA,
    SOURCES_SCHEMA,
    now_iso,
)
from mm_retriever.store.table_indexes import ensure_lookup_index
from mm_retriever.types import Document, Page

if TYPE_CHECKING:
    from mm_retriever.ingest.pool import Event

log = logging.getLogger("mm_retriever")


@dataclass
class IngestReport:
    """What ``MultimodalIndex.add`` did. Paths are as given/expanded by ``iter_files``."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason
    warnings: dict[str, str] = field(default_factory=dict)  # path -> warning (still indexed)
    recovered: list[str] = field(default_factory=list)  # interrupted writes finished or undone
    pages: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    doc_ids: dict[str, str] = field(default_factory=dict)  # path -> doc_id (added + unchanged)
    workers: int = 1  # reader processes used (1: read in the writing process)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _OpenDocument:
    """A document marked pending: its header, pages read so far, whether all are read."""

    document: Document
    warning: str | None
    pages: int = 0
    done: bool = False


@dataclass
class _Run:
    """The state of one ``add_files``: open documents in file order, pages to encode."""

    report: IngestReport
    timings: dict[str, float]
    open: dict[str, _OpenDocument] = field(default_factory=dict)
    batch: list[Page] = field(default_factory=list)


class IndexWriter:
    """Writes documents into ``store`` for ``legs`` (hold the writer lock while using it)."""

    def __init__(
        self,
        store: LanceDBStore,
        config: IndexConfig,
        legs: Mapping[str, Leg],
        *,
        batch_size: int = 8,
        flush_pages: int = 64,
        workers: int = 1,
    ) -> None:
        self.store = store
        self.config = config
        self.legs = legs
        self.batch_size = batch_size
        self.flush_pages = flush_pages
        self.workers = workers  # reader processes (0 or 1: read in this process)
        self._keep_sources: bool | None = None

    @property
    def keep_sources(self) -> bool:
        """Whether documents are stored as their source file (schema 2, ``image_store="source"``,
        rendered by pymupdf) rather than as encoded page images; an index of schema 1 keeps its
        layout so that older mm-retriever versions can still read it."""
        if self._keep_sources is None:
            self._keep_sources = keeps_sources(self.store, self.config.ingest)
        return self._keep_sources

    def add_files(self, files: list[Path], report: IngestReport, progress: bool) -> None:
        """Add each file not yet in the index; one bad file never stops the rest.

        Files are read by ``read_documents`` (``workers`` processes, or this one); pages of
        consecutive documents are encoded together, ``flush_pages`` at a time, so encoders get
        full batches, and each document is committed in file order once all its rows are
        written.
        """
        from mm_retriever.ingest.pool import read_documents

        timings: dict[str, float] = defaultdict(float)
        known = self.store.document_ids()  # fresh: read under the lock
        report.workers = self.workers
        events = read_documents(
            files,
            self.config.ingest,
            workers=self.workers,
            batch_size=self.batch_size,
            known=known,
        )
        run = _Run(report, timings)
        with (
            _Progress(progress, len(files)) as bar,
            contextlib.closing(events),
            _encoder_threads(self.workers if _uses_models(self.legs) else 1),
        ):
            try:
                while True:
                    t0 = time.perf_counter()
                    event = next(events, None)
                    timings["ingest"] += time.perf_counter() - t0
                    if event is None:
                        break
                    self._on_event(event, run, bar)
                self._flush(run)
                self._commit_ready(run)
            except BaseException:
                for doc in list(run.open.values()):
                    self._rollback(doc.document.doc_id)
                raise
        for stage, seconds in timings.items():
            report.timings[stage] = report.timings.get(stage, 0.0) + seconds

    def _on_event(self, event: Event, run: _Run, bar: _Progress) -> None:
        from mm_retriever.ingest.pool import Done, Failed, Opened, Pages, Unchanged

        report = run.report
        if isinstance(event, Pages):
            doc = run.open.get(event.key)
            if doc is None or not event.pages:
                return
            doc.pages += len(event.pages)
            run.batch.extend(event.pages)
            bar.advance(len(event.pages))
            if len(run.batch) >= self.flush_pages:
                self._flush(run)
                self._commit_ready(run)
        elif isinstance(event, Opened):
            bar.start_file(Path(event.key))
            bar.set_total(event.n_pages)
            doc_id = event.document.doc_id
            report.doc_ids[event.key] = doc_id
            self.store.mark_pending(doc_id, "add")
            faults.point("write:marked")
            run.open[event.key] = _OpenDocument(event.document, event.warning)
            if self.keep_sources:
                self._write_source(run, event.key, doc_id)
        elif isinstance(event, Done):
            doc = run.open.get(event.key)
            if doc is not None:
                doc.done = True
            for stage, seconds in event.timings.items():
                run.timings[stage] += float(seconds)
            bar.end_file()
            self._commit_ready(run)
        elif isinstance(event, Unchanged):
            report.doc_ids[event.key] = event.doc_id
            report.unchanged.append(event.key)
            bar.end_file()
        elif isinstance(event, Failed):
            self._fail(run, event.key, event.reason)
            bar.end_file()

    def _flush(self, run: _Run) -> None:
        """Encode the buffered pages (all their documents at once) and write their rows.

        When that fails, each document is tried alone, so only the one at fault fails."""
        pages, run.batch = run.batch, []
        if not pages:
            return
        try:
            self._write_rows(pages, run.timings)
        except Exception:
            by_doc: dict[str, list[Page]] = defaultdict(list)
            for page in pages:
                by_doc[page.doc_id].append(page)
            for doc_id, doc_pages in by_doc.items():
                try:
                    self._write_rows(doc_pages, run.timings)
                except Exception as exc:
                    key = next(k for k, d in run.open.items() if d.document.doc_id == doc_id)
                    self._fail(run, key, f"{type(exc).__name__}: {exc}")

    def _write_source(self, run: _Run, key: str, doc_id: str) -> None:
        """Write the document's ``sources`` row (its file, once) right after its marker."""
        ingest = self.config.ingest
        try:
            t0 = time.perf_counter()
            rows = source_rows(doc_id, key, ingest.dpi, ingest.image_format, ingest.image_quality)
            run.timings["images"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            faults.point(f"write:{SOURCES}")
            self.store.add(SOURCES, rows, SOURCES_SCHEMA)
            run.timings["write"] += time.perf_counter() - t0
        except Exception as exc:
            reason = exc.reason if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
            self._fail(run, key, reason)

    def _write_rows(self, pages: list[Page], timings: dict[str, float]) -> None:
        """Rows of ``pages`` for ``pages``, ``figures`` and every leg, one write per table."""
        ingest = self.config.ingest
        rows: dict[str, list[dict[str, Any]]] = {}
        t0 = time.perf_counter()
        rows.update(page_table_rows(pages, ingest, images=not self.keep_sources))
        timings["images"] += time.perf_counter() - t0
        for name, leg in self.legs.items():
            t0 = time.perf_counter()
            rows[leg_table(name)] = leg.rows(pages)
            timings[f"encode:{name}"] += time.perf_counter() - t0
            faults.point(f"encode:{name}")
        t0 = time.perf_counter()
        schemas = table_schemas(self.legs)
        for table, table_rows in rows.items():
            if table_rows:
                faults.point(f"write:{table}")
                self.store.add(table, table_rows, schemas.get(table))
        timings["write"] += time.perf_counter() - t0

    def _commit_ready(self, run: _Run) -> None:
        """Commit, in file order, every document whose pages are all read and written."""
        waiting = {p.doc_id for p in run.batch}
        for key, doc in list(run.open.items()):
            if not doc.done or doc.document.doc_id in waiting:
                break
            doc_id = doc.document.doc_id
            try:
                t0 = time.perf_counter()
                faults.point("write:document_text")
                header = doc.document
                write_document_texts(self.store, [(doc_id, header.title, header.source)])
                faults.point("write:filing_fields")
                write_filing_fields(self.store, [doc_id])
                faults.point("write:documents")
                self.store.add(DOCUMENTS, [document_row(doc.document, doc.pages)], DOCUMENTS_SCHEMA)
                run.timings["write"] += time.perf_counter() - t0
            except Exception as exc:
                self._fail(run, key, f"{type(exc).__name__}: {exc}")
                continue
            faults.point("commit:marker")
            self.store.clear_pending(doc_id)
            faults.point("commit:done")
            del run.open[key]
            run.report.added.append(key)
            run.report.pages += doc.pages
            if doc.warning:
                run.report.warnings[key] = doc.warning

    def _fail(self, run: _Run, key: str, reason: str) -> None:
        """Report ``key`` as failed; remove what was written for it and its buffered pages."""
        doc = run.open.pop(key, None)
        if doc is not None:
            doc_id = doc.document.doc_id
            run.batch = [p for p in run.batch if p.doc_id != doc_id]
            self._rollback(doc_id)
            log.warning("could not index %s: %s", key, reason)
        run.report.failed[key] = reason
        run.report.doc_ids.pop(key, None)

    def _rollback(self, doc_id: str) -> None:
        """Remove a failed document's rows and its marker (the marker stays if this fails)."""
        try:
            self.store.delete_rows(doc_id)
            self.store.clear_pending(doc_id)
        except Exception as exc:  # pragma: no cover - storage failure on top of a failure
            log.error(
                "could not remove partial rows of %s (%s); the next write removes them",
                doc_id,
                exc,
            )

    def after_write(
        self, compact_fragments: int, keep_versions_for: timedelta | None = None
    ) -> None:
        """Compact tables (and, with ``keep_versions_for``, every table and its old versions),
        refresh legs that keep an index (``refresh``), stamp the manifest."""
        faults.point("after:optimize")
        with step("compacting tables"):
            self.store.optimize(
                min_fragments=compact_fragments, keep_versions_for=keep_versions_for
            )
        for name, leg in self.legs.items():
            with step(f"updating the search index of leg '{name}'"):
                leg.refresh(self.store)
        ensure_document_text_index(self.store)  # the document prior's full-text index
        for name in self.store.doc_tables():  # doc_id lookups: hydration, within-doc filters
            tbl = self.store.table(name)
            if tbl is not None:
                ensure_lookup_index(tbl)
        faults.point("after:manifest")
        self.store.write_manifest({"updated_at": now_iso()})


def _uses_models(legs: Mapping[str, Leg]) -> bool:
    """Whether any leg embeds with a model (torch); a BM25-only index never imports torch."""
    return any(leg.uses_models() for leg in legs.values())


@contextlib.contextmanager
def _encoder_threads(workers: int) -> Iterator[None]:
    """While reader processes use the cores, this process's torch encoders use fewer threads
    (cores minus readers, at least one), so the two do not oversubscribe the machine."""
    if workers <= 1:
        yield
        return
    import torch  # models load lazily, in this block: set the threads before they run

    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(before, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def page_table_rows(
    batch: Sequence[Page], ingest: IngestConfig, *, images: bool = True
) -> dict[str, list[dict]]:
    """Rows of the index's own per-page tables for a batch of pages (every engine uses this).

    ``images``: store encoded page images and crops (False: the document's ``sources`` row is
    kept and they are rendered from it on demand; see ``IndexWriter.keep_sources``)."""
    return {
        PAGES: page_rows(batch, ingest.image_format, ingest.image_quality, images=images),
        FIGURES: figure_rows(batch, images=images),
    }


def keeps_sources(store: LanceDBStore, ingest: IngestConfig) -> bool:
    """Whether new documents keep their source file (``sources``) instead of encoded images:
    schema-2 indexes with ``image_store="source"`` rendered by pymupdf (every engine uses this)."""
    version = int((store.read_manifest() or {}).get("schema_version", 0))
    return version >= 2 and ingest.image_store == "source" and ingest.renderer == "pymupdf"


def table_schemas(legs: Mapping[str, Leg]) -> dict[str, Any]:
    """Schema of every per-page table rows are written to (None: inferred from the rows)."""
    schemas: dict[str, Any] = {
        PAGES: PAGES_SCHEMA,
        FIGURES: FIGURES_SCHEMA,
        SOURCES: SOURCES_SCHEMA,
    }
    schemas.update({leg_table(n): leg_schema(leg) for n, leg in legs.items()})
    return schemas


def leg_schema(leg: Leg) -> Any:
    """The Arrow schema of a leg's table (``Leg.schema()``; None: inferred from rows)."""
    return leg.schema()


class _Progress:
    """A rich progress bar over files and the pages of the current file (or nothing)."""

    def __init__(self, enabled: bool, n_files: int) -> None:
        self.enabled = enabled
        self.n_files = n_files
        self._progress: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._progress.__enter__()
            self._files = self._progress.add_task("files", total=self.n_files)
            self._pages = self._progress.add_task("pages", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_file(self, path: Path) -> None:
        if self._progress is not None:
            self._progress.reset(self._pages, total=None, description=f"pages of {path.name}")

    def set_total(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._pages, total=n)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._pages, n)

    def end_file(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._files, 1)
