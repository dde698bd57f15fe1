"""MultimodalIndex: create/open an index, add and delete documents, hand out retrievers.

An index is a LanceDB database (a local folder or an object-store URI) holding a manifest (the
full ``IndexConfig`` with each leg's resolved encoder settings, library versions, times), the
``documents``, ``pages`` and ``figures`` tables and one ``leg_<name>`` table per leg.
``MultimodalIndex.open(uri)`` rebuilds exactly the stored pipeline.

Adding a document writes its rows for every table first and its ``documents`` row last (the
commit marker); any failure deletes what was written for it, so the index never holds a
partial document. Re-adding an unchanged file (same content hash) does nothing.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_retriever import registry
from mm_retriever.config import IndexConfig, LegSpec
from mm_retriever.errors import (
    IngestError,
    MissingExtraError,
    MMRetrieverError,
    ModelUnavailableError,
)
from mm_retriever.protocols import Leg
from mm_retriever.store import DOCUMENTS, FIGURES, PAGES, SCHEMA_VERSION, LanceDBStore, leg_table
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

if TYPE_CHECKING:
    from mm_retriever.hybrid import HybridRetriever

log = logging.getLogger("mm_retriever")

IMAGES_DIR = "_images"
_VERSIONED = (
    "mm-retriever",
    "lancedb",
    "pyarrow",
    "torch",
    "transformers",
    "sentence-transformers",
    "colpali-engine",
    "pymupdf",
)


class IndexExistsError(MMRetrieverError, FileExistsError):
    """``create`` found an index already at the URI."""


class IndexNotFoundError(MMRetrieverError, FileNotFoundError):
    """``open`` found no index at the URI."""


@dataclass
class IngestReport:
    """What ``MultimodalIndex.add`` did. Paths are as given/expanded by ``iter_files``."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason
    pages: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    doc_ids: dict[str, str] = field(default_factory=dict)  # path -> doc_id (added + unchanged)

    @property
    def ok(self) -> bool:
        return not self.failed


def library_versions() -> dict[str, str]:
    out = {}
    for dist in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


def _accepts(factory: Any, param: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return param in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def build_leg(spec: LegSpec, device: str | None) -> Leg:
    """Instantiate a leg from its spec (``name`` and ``device`` passed when the leg takes them)."""
    factory = registry.legs.get(spec.name)
    kwargs = dict(spec.options)
    if _accepts(factory, "name"):
        kwargs["name"] = spec.leg_name
    if device is not None and _accepts(factory, "device"):
        kwargs["device"] = device
    leg = factory(**kwargs)
    if getattr(leg, "name", None) != spec.leg_name:
        leg.name = spec.leg_name
    return leg


def build_legs(
    specs: Iterable[LegSpec], device: str | None
) -> tuple[dict[str, Leg], dict[str, str]]:
    """Legs by name, plus the skipped ones (name -> reason) whose model or package is missing."""
    legs: dict[str, Leg] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        name = spec.leg_name
        if name in legs or name in skipped:
            raise ValueError(f"two legs are named '{name}'; give one an alias")
        try:
            legs[name] = build_leg(spec, device)
        except (ModelUnavailableError, MissingExtraError) as exc:
            skipped[name] = str(exc)
            log.warning("leg '%s' skipped: %s", name, exc)
    return legs, skipped


class MultimodalIndex:
    """A multimodal page index over PDFs and images, stored in LanceDB."""

    def __init__(
        self,
        store: LanceDBStore,
        config: IndexConfig,
        legs: dict[str, Leg],
        skipped_legs: dict[str, str] | None = None,
        *,
        write_blockers: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.legs = legs
        self.skipped_legs = dict(skipped_legs or {})
        # legs stored in the manifest that could not be rebuilt fully here: writing would leave
        # new documents without (some of) their rows, so add() refuses while any exist
        self._write_blockers = dict(write_blockers or {})
        self.batch_size = 8
        self.flush_pages = 64
        self.compact_fragments = 16  # compact a table once it holds this many fragments

    def __repr__(self) -> str:
        return f"MultimodalIndex({self.uri!r}, legs={list(self.legs)})"

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def path(self) -> Path | None:
        """The folder of a local index (None for object stores)."""
        return self.store.path

    # ----------------------------------------------------------- create/open
    @classmethod
    def create(
        cls,
        uri: str | Path,
        config: IndexConfig | None = None,
        *,
        overwrite: bool = False,
        storage_options: Mapping[str, str] | None = None,
    ) -> MultimodalIndex:
        """Create an empty index at ``uri`` with ``config`` (defaults: all legs, RRF).

        Legs whose model is not available are skipped with one warning each and left out of
        the stored config (see ``skipped_legs``); the figure leg falls back to figure text.
        """
        config = config or IndexConfig()
        store = LanceDBStore(uri, storage_options=storage_options)
        if store.read_manifest() is not None or store.table_names():
            if not overwrite:
                raise IndexExistsError(
                    f"an index already exists at {uri}: open it with MultimodalIndex.open(), "
                    "or pass overwrite=True to replace it"
                )
            store.drop_all()
            if store.path is not None:
                shutil.rmtree(store.path / IMAGES_DIR, ignore_errors=True)
        registry.fusions.get(config.fusion.name)  # unknown fusion: fail before writing
        legs, skipped = build_legs(config.legs, config.device)
        if not legs:
            raise MMRetrieverError(
                "no retrieval leg could be built: "
                + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            )
        by_name = {s.leg_name: s for s in config.legs}
        stored = config.model_copy(
            update={
                "legs": [
                    LegSpec(
                        name=by_name[n].name,
                        alias=by_name[n].alias,
                        weight=by_name[n].weight,
                        options=leg.config(),
                    )
                    for n, leg in legs.items()
                ]
            }
        )
        now = now_iso()
        store.write_manifest(
            {
                "schema_version": SCHEMA_VERSION,
                "config": stored.model_dump(mode="json"),
                "requested_config": config.model_dump(mode="json"),
                "skipped_legs": skipped,
                "versions": library_versions(),
                "created_at": now,
                "updated_at": now,
            }
        )
        return cls(store, stored, legs, skipped)

    @classmethod
    def open(
        cls,
        uri: str | Path,
        *,
        device: str | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> MultimodalIndex:
        """Open the index at ``uri`` and rebuild its legs from the manifest.

        ``device`` overrides the stored device (e.g. open a GPU-built index on CPU).
        """
        from mm_retriever.store import local_path

        path = local_path(uri)
        store = (
            None
            if path is not None and not path.is_dir()
            else LanceDBStore(uri, storage_options=storage_options)
        )
        manifest = store.read_manifest() if store is not None else None
        if store is None or manifest is None:
            raise IndexNotFoundError(
                f"no mm-retriever index at {uri}: create one with MultimodalIndex.create() "
                "or `mm-retriever index PATH --index DIR`"
            )
        version = int(manifest.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise MMRetrieverError(
                f"the index at {uri} has schema version {version}, newer than this "
                f"mm-retriever understands ({SCHEMA_VERSION}); upgrade mm-retriever"
            )
        config = IndexConfig.model_validate(manifest["config"])
        if device is not None:
            config = config.model_copy(update={"device": device})
        legs, skipped = build_legs(config.legs, config.device)
        blockers = dict(skipped)
        for name, leg in legs.items():
            image_model = getattr(leg, "unavailable_image_model", None)
            if image_model:  # the figure leg fell back to text-only: reading works, writing not
                blockers[name] = f"image model '{image_model}' is not available"
        index = cls(store, config, legs, skipped, write_blockers=blockers)
        with store.writer_lock(blocking=False) as free:
            if free:  # no writer at work: rows without a documents row are leftovers
                with contextlib.suppress(Exception):  # e.g. a read-only store
                    store.cleanup_orphans()
        return index

    @classmethod
    def exists(cls, uri: str | Path, *, storage_options: Mapping[str, str] | None = None) -> bool:
        """Whether an index (a manifest) exists at ``uri``. Creates nothing."""
        from mm_retriever.store import local_path

        path = local_path(uri)
        if path is not None and not (path / "manifest.lance").is_dir():
            return False
        try:
            return LanceDBStore(uri, storage_options=storage_options).read_manifest() is not None
        except Exception:
            return False

    def manifest(self) -> dict[str, Any]:
        return self.store.read_manifest() or {}

    # --------------------------------------------------------------- writing
    def add(
        self, paths: str | Path | Iterable[str | Path], *, progress: bool = False
    ) -> IngestReport:
        """Index files and folders (PDF, PNG, JPEG). One bad file never stops the rest."""
        from mm_retriever.ingest import iter_files

        if self._write_blockers:
            raise MMRetrieverError(
                "cannot add documents: this index's leg(s) "
                + "; ".join(f"'{n}' ({why})" for n, why in self._write_blockers.items())
                + " cannot be rebuilt here"
            )
        if isinstance(paths, str | Path):
            paths = [paths]
        start = time.perf_counter()
        report = IngestReport()
        timings: dict[str, float] = defaultdict(float)
        files = iter_files(paths)
        with self.store.writer_lock(), _Progress(progress, len(files)) as bar:
            self.store.cleanup_orphans()
            known = self.store.document_ids()
            for path in files:
                bar.start_file(path)
                self._add_file(path, known, report, timings, bar)
                bar.end_file()
            if report.added:
                t0 = time.perf_counter()
                self._after_write()
                timings["optimize"] += time.perf_counter() - t0
        report.timings = dict(timings)
        report.seconds = time.perf_counter() - start
        return report

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
            for stage, seconds in (getattr(reader, "timings", None) or {}).items():
                timings[stage] += float(seconds)
        known.add(doc_id)
        report.added.append(key)
        report.pages += n

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
            if batch is None:
                break
            if not batch:
                continue
            t0 = time.perf_counter()
            buffer[PAGES].extend(page_rows(batch, ingest.image_format, ingest.image_quality))
            buffer[FIGURES].extend(figure_rows(batch))
            timings["images"] += time.perf_counter() - t0
            for name, leg in self.legs.items():
                t0 = time.perf_counter()
                buffer[leg_table(name)].extend(leg.rows(batch))
                timings[f"encode:{name}"] += time.perf_counter() - t0
            n_pages += len(batch)
            buffered += len(batch)
            bar.advance(len(batch))
            if buffered >= self.flush_pages:
                self._flush(buffer, timings)
                buffered = 0
        self._flush(buffer, timings)
        t0 = time.perf_counter()
        self.store.add(DOCUMENTS, [document_row(reader.document(), n_pages)], DOCUMENTS_SCHEMA)
        timings["write"] += time.perf_counter() - t0
        return n_pages

    def _flush(self, buffer: dict[str, list[dict[str, Any]]], timings: dict[str, float]) -> None:
        t0 = time.perf_counter()
        schemas = {PAGES: PAGES_SCHEMA, FIGURES: FIGURES_SCHEMA}
        schemas.update(
            {leg_table(n): getattr(leg, "schema", lambda: None)() for n, leg in self.legs.items()}
        )
        for table, rows in buffer.items():
            if rows:
                self.store.add(table, rows, schemas.get(table))
        buffer.clear()
        timings["write"] += time.perf_counter() - t0

    def _rollback(self, doc_id: str) -> None:
        try:
            self.store.delete_document(doc_id)
        except Exception as exc:  # pragma: no cover - storage failure on top of a failure
            log.error(
                "could not remove partial rows of %s (%s); they are removed on next open",
                doc_id,
                exc,
            )

    def _after_write(self) -> None:
        """Compact tables, refresh legs that keep an index (``refresh``), stamp the manifest."""
        self.store.optimize(min_fragments=self.compact_fragments)
        for leg in self.legs.values():
            refresh = getattr(leg, "refresh", None)
            if callable(refresh):
                refresh(self.store)
        self.store.write_manifest({"updated_at": now_iso()})

    def delete(self, doc_id: str) -> None:
        """Remove a document (by id) from every table."""
        with self.store.writer_lock():
            if not self.store.has_document(doc_id) and doc_id not in self.store.orphan_ids():
                raise KeyError(f"no document with id '{doc_id}' in the index at {self.uri}")
            self.store.delete_document(doc_id)
            if self.path is not None:
                shutil.rmtree(self.path / IMAGES_DIR / doc_id, ignore_errors=True)
            self._after_write()

    # --------------------------------------------------------------- reading
    def documents(self) -> list[dict[str, Any]]:
        """One dict per indexed document: doc_id, source, title, n_pages, added_at, metadata."""
        return self.store.documents()

    def num_pages(self) -> int:
        return self.store.count(PAGES)

    def __len__(self) -> int:
        return self.store.count(DOCUMENTS)

    def retriever(self, **kwargs: Any) -> HybridRetriever:
        """A HybridRetriever over this index (kwargs: fusion, legs, weights, candidates, ...)."""
        from mm_retriever.hybrid import HybridRetriever

        return HybridRetriever(self, **kwargs)

    def bytes_per_table(self) -> dict[str, int]:
        """Bytes on disk per table (local indexes)."""
        return self.store.table_bytes()


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
