"""The write transaction: add files to an index, one committed document at a time.

Everything here runs under the store's writer lock (``IndexWriter.add``). For each new file:
a pending marker, the rows of ``pages``, ``figures`` and every leg table, the ``documents`` row
(the commit marker), the marker removed (see ``mm_retriever.store.lancedb_store``). A failure
removes what was written for that file; a crash leaves the marker for the next writer.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mm_retriever import faults
from mm_retriever.config import IndexConfig, IngestConfig
from mm_retriever.errors import IngestError
from mm_retriever.protocols import Leg
from mm_retriever.store import DOCUMENTS, FIGURES, PAGES, LanceDBStore, leg_table
from mm_retriever.store.schema import (
    DOCUMENTS_SCHEMA,
    FIGURES_SCHEMA,
    PAGES_SCHEMA,
    document_row,
    figure_rows,
    now_iso,
    page_rows,
)
from mm_retriever.types import Page

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

    @property
    def ok(self) -> bool:
        return not self.failed


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
    ) -> None:
        self.store = store
        self.config = config
        self.legs = legs
        self.batch_size = batch_size
        self.flush_pages = flush_pages

    def add_files(self, files: list[Path], report: IngestReport, progress: bool) -> None:
        """Add each file not yet in the index; one bad file never stops the rest."""
        timings: dict[str, float] = defaultdict(float)
        known = self.store.document_ids()  # fresh: read under the lock
        with _Progress(progress, len(files)) as bar:
            for path in files:
                bar.start_file(path)
                self._add_file(path, known, report, timings, bar)
                bar.end_file()
        for stage, seconds in timings.items():
            report.timings[stage] = report.timings.get(stage, 0.0) + seconds

    def _add_file(
        self,
        path: Path,
        known: set[str],
        report: IngestReport,
        timings: dict[str, float],
        bar: _Progress,
    ) -> None:
        from mm_retriever.ingest import DocumentReader

        key = str(path)
        t0 = time.perf_counter()
        faults.point("read:open")
        try:
            reader = DocumentReader(path, self.config.ingest)
        except IngestError as exc:
            report.failed[key] = exc.reason
            return
        except Exception as exc:  # an unexpected reader bug: report, go on
            report.failed[key] = f"{type(exc).__name__}: {exc}"
            return
        finally:
            timings["open"] += time.perf_counter() - t0
        with reader:
            bar.set_total(reader.n_pages)
            doc_id = reader.doc_id
            report.doc_ids[key] = doc_id
            if doc_id in known:
                report.unchanged.append(key)
                return
            warning = getattr(reader, "warning", None)
            self.store.mark_pending(doc_id, "add")
            faults.point("write:marked")
            try:
                n = self._write_document(reader, timings, bar)
            except BaseException as exc:
                self._rollback(doc_id)
                if not isinstance(exc, Exception):
                    raise
                log.warning("could not index %s: %s: %s", key, type(exc).__name__, exc)
                report.failed[key] = f"{type(exc).__name__}: {exc}"
                del report.doc_ids[key]
                return
            faults.point("commit:marker")
            self.store.clear_pending(doc_id)
            faults.point("commit:done")
            for stage, seconds in (getattr(reader, "timings", None) or {}).items():
                timings[stage] += float(seconds)
        known.add(doc_id)
        report.added.append(key)
        report.pages += n
        if warning:
            report.warnings[key] = warning

    def _write_document(self, reader: Any, timings: dict[str, float], bar: _Progress) -> int:
        """Encode and write one document's rows, then its documents row. Returns its pages."""
        ingest = self.config.ingest
        buffer: dict[str, list[dict[str, Any]]] = defaultdict(list)
        buffered = 0
        n_pages = 0
        pages_iter: Iterator[list[Page]] = iter(reader.pages(batch_size=self.batch_size))
        while True:
            t0 = time.perf_counter()
            batch = next(pages_iter, None)
            timings["ingest"] += time.perf_counter() - t0
            faults.point("read:pages")
            if batch is None:
                break
            if not batch:
                continue
            t0 = time.perf_counter()
            for table, rows in page_table_rows(batch, ingest).items():
                buffer[table].extend(rows)
            timings["images"] += time.perf_counter() - t0
            for name, leg in self.legs.items():
                t0 = time.perf_counter()
                buffer[leg_table(name)].extend(leg.rows(batch))
                timings[f"encode:{name}"] += time.perf_counter() - t0
                faults.point(f"encode:{name}")
            n_pages += len(batch)
            buffered += len(batch)
            bar.advance(len(batch))
            if buffered >= self.flush_pages:
                self._flush(buffer, timings)
                buffered = 0
        self._flush(buffer, timings)
        t0 = time.perf_counter()
        faults.point("write:documents")
        self.store.add(DOCUMENTS, [document_row(reader.document(), n_pages)], DOCUMENTS_SCHEMA)
        timings["write"] += time.perf_counter() - t0
        return n_pages

    def _flush(self, buffer: dict[str, list[dict[str, Any]]], timings: dict[str, float]) -> None:
        t0 = time.perf_counter()
        schemas = table_schemas(self.legs)
        for table, rows in buffer.items():
            if rows:
                faults.point(f"write:{table}")
                self.store.add(table, rows, schemas.get(table))
        buffer.clear()
        timings["write"] += time.perf_counter() - t0

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
        self.store.optimize(min_fragments=compact_fragments, keep_versions_for=keep_versions_for)
        for leg in self.legs.values():
            refresh = getattr(leg, "refresh", None)  # optional (see protocols.Leg)
            if callable(refresh):
                refresh(self.store)
        faults.point("after:manifest")
        self.store.write_manifest({"updated_at": now_iso()})


def page_table_rows(batch: Sequence[Page], ingest: IngestConfig) -> dict[str, list[dict]]:
    """Rows of the index's own per-page tables for a batch of pages (every engine uses this)."""
    return {
        PAGES: page_rows(batch, ingest.image_format, ingest.image_quality),
        FIGURES: figure_rows(batch),
    }


def table_schemas(legs: Mapping[str, Leg]) -> dict[str, Any]:
    """Schema of every per-page table rows are written to (None: inferred from the rows)."""
    schemas: dict[str, Any] = {PAGES: PAGES_SCHEMA, FIGURES: FIGURES_SCHEMA}
    schemas.update({leg_table(n): leg_schema(leg) for n, leg in legs.items()})
    return schemas


def leg_schema(leg: Leg) -> Any:
    """The Arrow schema of a leg's table (optional ``schema()``; None: inferred from rows)."""
    schema = getattr(leg, "schema", None)
    return schema() if callable(schema) else None


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
