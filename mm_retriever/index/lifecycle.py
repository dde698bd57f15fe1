"""MultimodalIndex: create/open an index, add and delete documents, hand out retrievers.

An index is a LanceDB database (a local folder or an object-store URI) holding a manifest (the
full ``IndexConfig`` with each leg's resolved encoder settings, library versions, times, the
list of its tables), the ``documents``, ``pages``, ``figures`` and ``pending`` tables and one
``leg_<name>`` table per leg. ``MultimodalIndex.open(uri)`` rebuilds exactly the stored pipeline.

Opening and searching only read. Writing (``add``, ``delete``, ``repair``) happens under the
store's writer lock, which first brings every table to its latest version and finishes or undoes
the writes that crashed writers left pending (``mm_retriever.index.writer``). Re-adding an
unchanged file (same content hash) does nothing, also when two processes add it at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_retriever import faults, registry
from mm_retriever.config import IndexConfig, LegSpec
from mm_retriever.errors import IndexCorruptError, MMRetrieverError
from mm_retriever.index.legs import build_legs
from mm_retriever.index.writer import IndexWriter, IngestReport, leg_schema
from mm_retriever.protocols import Leg
from mm_retriever.ranking.document_prior import ensure_document_text_index
from mm_retriever.ranking.image_cache import ImageCache
from mm_retriever.ranking.page_images import PageImages
from mm_retriever.store import DOCUMENTS, SCHEMA_VERSION, LanceDBStore, leg_table
from mm_retriever.store.lancedb_store import CREATING
from mm_retriever.store.schema import BASE_SCHEMAS, MANIFEST, now_iso

if TYPE_CHECKING:
    from mm_retriever.explain import Explanation
    from mm_retriever.index.migrate import MigrationReport
    from mm_retriever.index.ray_engine import RayOptions
    from mm_retriever.ranking.hybrid import HybridRetriever

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
class RepairReport:
    """What ``MultimodalIndex.repair`` found and did."""

    problems: list[str] = field(default_factory=list)  # found before repairing
    recovered: list[str] = field(default_factory=list)  # interrupted writes finished/undone
    removed_orphans: list[str] = field(default_factory=list)  # unexplained rows removed


@dataclass
class OptimizeReport:
    """What ``MultimodalIndex.optimize`` did (bytes: local indexes; 0 on object stores)."""

    tables: list[str] = field(default_factory=list)  # tables compacted and cleaned
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0


def library_versions() -> dict[str, str]:
    out = {}
    for dist in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    return out


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
        # reader processes for add() (None: $MM_RETRIEVER_WORKERS or every core; 0/1: none)
        self.workers: int | None = None
        self.compact_fragments = 16  # compact a table once it holds this many fragments
        # an add of at least this many pages also compacts every table and deletes table
        # versions older than keep_versions_for (LanceDB keeps them for 7 days otherwise)
        self.auto_optimize_pages = 1000
        self.keep_versions_for = timedelta(minutes=10)
        self.lock_timeout: float = -1  # seconds to wait for another writer (-1: forever)

    def __repr__(self) -> str:
        return f"MultimodalIndex({self.uri!r}, legs={list(self.legs)})"

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def path(self) -> Path | None:
        """The folder of a local index (None for object stores)."""
        return self.store.path

    @functools.cached_property
    def image_cache_dir(self) -> Path | None:
        """Where retrievers write page images for ``image_path``: a folder of the user cache
        (``$MM_RETRIEVER_CACHE/page-images/<index key>``), never inside the index, so that
        searching changes nothing in it. None when the manifest cannot be read."""
        from mm_retriever.cache import cache_root

        created = (self.store.read_manifest() or {}).get("created_at", "")
        key = hashlib.sha256(f"{self.uri}\n{created}".encode()).hexdigest()[:16]
        return cache_root() / "page-images" / key

    @functools.cached_property
    def image_cache(self) -> ImageCache | None:
        """The bounded folder behind ``image_path`` (``image_cache_dir``; LRU eviction at
        ``$MM_RETRIEVER_IMAGE_CACHE_MB``, default 1024 MB; set ``.max_bytes`` to change)."""
        root = self.image_cache_dir
        return None if root is None else ImageCache(root)

    @functools.cached_property
    def page_images(self) -> PageImages:
        """Page images and figure crops as stored, or rendered from the kept source file."""
        return PageImages(self.store)

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
        Every table is created empty, and listed in the manifest, so a table that later goes
        missing is reported as damage, never read as "no documents".
        """
        config = config or IndexConfig()
        store = LanceDBStore(uri, storage_options=storage_options)
        # the manifest is written last: when it exists, the index is complete (checked again
        # under the lock, where a concurrent create() has finished); with the creation marker
        # still there, it may be the remains of a create() that was killed
        names = store.table_names()
        if MANIFEST in names and CREATING not in names and not overwrite:
            raise IndexExistsError(
                f"an index already exists at {uri}: open it with MultimodalIndex.open(), "
                "or pass overwrite=True to replace it"
            )
        registry.fusions.get(config.fusion.name)  # unknown fusion: fail before writing
        legs, skipped = build_legs(config.legs, config.device)
        if not legs:
            raise MMRetrieverError(
                "no retrieval leg could be built: "
                + "; ".join(f"{k}: {v}" for k, v in skipped.items())
            )
        with store.writer_lock():
            marker = store.creation_marker()
            if marker is not None and not _complete(store):
                _reset_half_created(store, marker)
            elif store.doc_tables() or MANIFEST in store.table_names():
                if not overwrite:
                    raise IndexExistsError(
                        f"an index already exists at {uri}: open it with "
                        "MultimodalIndex.open(), or pass overwrite=True to replace it"
                    )
                store.drop_all()
                if store.path is not None:
                    shutil.rmtree(store.path / IMAGES_DIR, ignore_errors=True)
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
            tables = {name: schema for name, schema in BASE_SCHEMAS.items() if name != MANIFEST}
            for name, leg in legs.items():
                schema = leg_schema(leg)
                if schema is not None:
                    tables[leg_table(name)] = schema
            store.mark_creating()  # first: what follows is provably a half-created index
            faults.point("create:marked")
            for name, schema in tables.items():
                store.ensure_table(name, schema)
                faults.point("create:table")
            now = now_iso()
            store.write_manifest(  # last: an index without a manifest is no index
                {
                    "schema_version": SCHEMA_VERSION,
                    "config": stored.model_dump(mode="json"),
                    "requested_config": config.model_dump(mode="json"),
                    "skipped_legs": skipped,
                    "versions": library_versions(),
                    "tables": sorted(tables),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            faults.point("create:manifest")
            store.clear_creating()  # last: the index is complete
        return cls(store, stored, legs, skipped)

    @classmethod
    def open(
        cls,
        uri: str | Path,
        *,
        device: str | None = None,
        storage_options: Mapping[str, str] | None = None,
        read_consistency_interval: timedelta | str | None = "default",
    ) -> MultimodalIndex:
        """Open the index at ``uri`` and rebuild its legs from the manifest. Writes nothing.

        ``device`` overrides the stored device (e.g. open a GPU-built index on CPU).
        ``read_consistency_interval``: how soon other processes' writes become visible (0 s
        locally, 5 s on object stores by default; None: never after opening).
        Raises ``IndexNotFoundError`` (no index there) or ``IndexCorruptError`` (a table the
        index needs is missing or unreadable).
        """
        from mm_retriever.store import local_path

        path = local_path(uri)
        if path is not None and not path.is_dir():  # connecting would create the folder
            raise IndexNotFoundError(
                f"no mm-retriever index at {uri}: create one with MultimodalIndex.create() "
                "or `mm-retriever index PATH --index DIR`"
            )
        store = LanceDBStore(
            uri,
            storage_options=storage_options,
            read_consistency_interval=read_consistency_interval,
        )
        marker = store.creation_marker()
        if marker is not None and not _complete(store):
            raise IndexNotFoundError(interrupted_message(store.uri, marker))
        manifest = store.read_manifest()
        if manifest is None:
            if store.doc_tables():
                raise IndexCorruptError(store.uri, MANIFEST, "the table is missing or empty")
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
        if "config" not in manifest:
            raise IndexCorruptError(store.uri, MANIFEST, "it holds no 'config' entry")
        store.verify(manifest.get("tables") or ())
        config = IndexConfig.model_validate(manifest["config"])
        if device is not None:
            config = config.model_copy(update={"device": device})
        legs, skipped = build_legs(config.legs, config.device)
        blockers = dict(skipped)
        for name, leg in legs.items():
            image_model = leg.unavailable_image_model
            if image_model:  # the figure leg fell back to text-only: reading works, writing not
                blockers[name] = f"image model '{image_model}' is not available"
        return cls(store, config, legs, skipped, write_blockers=blockers)

    @classmethod
    def exists(cls, uri: str | Path, *, storage_options: Mapping[str, str] | None = None) -> bool:
        """Whether an index (a manifest table) exists at ``uri``. Creates and reads nothing.

        True also for a damaged manifest: ``open`` then says what is wrong.
        """
        from mm_retriever.store import local_path

        path = local_path(uri)
        if path is not None:
            if not (path / f"{MANIFEST}.lance").is_dir():
                return False
            if not (path / f"{CREATING}.lance").is_dir():
                return True
        try:
            store = LanceDBStore(uri, storage_options=storage_options)
            names = store.table_names()
        except Exception:
            return False
        return MANIFEST in names and (CREATING not in names or _complete(store))

    @classmethod
    def interrupted_creation(
        cls, uri: str | Path, *, storage_options: Mapping[str, str] | None = None
    ) -> dict[str, Any] | None:
        """When ``uri`` holds only a half-created index (``create`` was killed before it wrote
        a complete manifest): who created it and when (``owner``, ``started_at``); else None.
        ``create`` and ``reset_interrupted`` remove such remains. Reads only."""
        from mm_retriever.store import local_path

        path = local_path(uri)
        if path is not None and not (path / f"{CREATING}.lance").is_dir():
            return None
        store = LanceDBStore(uri, storage_options=storage_options)
        marker = store.creation_marker()
        return None if marker is None or _complete(store) else marker

    @classmethod
    def reset_interrupted(
        cls, uri: str | Path, *, storage_options: Mapping[str, str] | None = None
    ) -> list[str]:
        """Remove the tables of a half-created index at ``uri`` (see ``interrupted_creation``),
        under the writer lock; nothing else there is touched. Returns the tables removed (none
        when the index is complete or absent, or another process finished creating it)."""
        if cls.interrupted_creation(uri, storage_options=storage_options) is None:
            return []
        store = LanceDBStore(uri, storage_options=storage_options)
        with store.writer_lock():
            marker = store.creation_marker()
            if marker is None or _complete(store):
                return []
            return _reset_half_created(store, marker)

    def manifest(self) -> dict[str, Any]:
        return self.store.read_manifest() or {}

    # --------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _writing(self, report: IngestReport | RepairReport | None = None) -> Any:
        """The writer lock, held with fresh tables, checked and with crashed writes recovered.

        Yields the ids that were pending before recovery (a re-run of an interrupted delete
        finds its document there).
        """
        with self.store.writer_lock(self.lock_timeout):
            self.store.verify(self.manifest().get("tables") or ())
            if CREATING in self.store.table_names():  # create() died after its manifest
                self.store.clear_creating()
            pending = {m["doc_id"] for m in self.store.pending()}
            recovered = self.store.recover()
            if report is not None:
                report.recovered.extend(recovered.undone + recovered.completed + recovered.cleared)
            yield pending

    def add(
        self,
        paths: str | Path | Iterable[str | Path],
        *,
        progress: bool = False,
        workers: int | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        cpus_per_reader: float = 1.0,
        gpus_per_encoder: float | None = None,
        ray_options: RayOptions | None = None,
    ) -> IngestReport:
        """Index files and folders (PDF, PNG, JPEG). One bad file never stops the rest.

        ``workers``: processes that open, render, read and OCR pages (default ``self.workers``,
        else ``$MM_RETRIEVER_WORKERS``, else one per core); 0 or 1 reads in this process. A
        file that crashes its reader process is reported in ``failed``; the rest is indexed.

        ``engine="ray"`` runs the same write on Ray Data (extra ``ray``; see
        ``mm_retriever.index.ray_engine``): ``ray_address`` (None: the Ray of this process or a
        local one; ``"auto"``; ``"ray://host:10001"``), ``cpus_per_reader``,
        ``gpus_per_encoder``; ``ray_options`` sets the rest (batch sizes, actors per leg).
        """
        from mm_retriever.ingest import iter_files
        from mm_retriever.ingest.pool import check_workers, usable_workers

        n_workers = usable_workers(check_workers(workers if workers is not None else self.workers))

        if engine not in ("local", "ray"):
            raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
        if engine == "ray":
            from mm_retriever.index.ray_engine import RayOptions, require_ray

            require_ray()  # a missing extra fails before anything is read or locked
            ray_options = dataclasses.replace(
                ray_options or RayOptions(),
                address=ray_address,
                cpus_per_reader=cpus_per_reader,
                gpus_per_encoder=gpus_per_encoder,
            )

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
        files = iter_files(paths)
        writer = IndexWriter(
            self.store,
            self.config,
            self.legs,
            batch_size=self.batch_size,
            flush_pages=self.flush_pages,
            workers=n_workers,
        )
        with self._writing(report):
            if ray_options is not None:
                from mm_retriever.index.ray_engine import add_with_ray

                add_with_ray(
                    self.store, self.config, self.legs, files, report, ray_options, progress
                )
            else:
                writer.add_files(files, report, progress)
            if report.added or report.recovered:
                t0 = time.perf_counter()
                large = report.pages >= self.auto_optimize_pages
                keep = self.keep_versions_for if large else None
                writer.after_write(self.compact_fragments, keep)
                report.timings["optimize"] = time.perf_counter() - t0
        report.seconds = time.perf_counter() - start
        return report

    def delete(self, doc_id: str) -> None:
        """Remove a document (by id) from every table. Unknown ids raise ``KeyError``."""
        if not isinstance(doc_id, str) or not doc_id:
            raise KeyError(f"document ids are non-empty strings, got {doc_id!r}")
        with self._writing() as pending:
            if not self.store.has_document(doc_id) and doc_id not in pending:
                raise KeyError(f"no document with id '{doc_id}' in the index at {self.uri}")
            self.store.delete_document(doc_id)
            if self.path is not None:  # written by mm-retriever < 0.2
                shutil.rmtree(self.path / IMAGES_DIR / doc_id, ignore_errors=True)
            if self.image_cache_dir is not None:
                shutil.rmtree(self.image_cache_dir / doc_id, ignore_errors=True)
            self._writer().after_write(self.compact_fragments)

    def _writer(self) -> IndexWriter:
        return IndexWriter(self.store, self.config, self.legs)

    def check(self) -> list[str]:
        """Problems with the index (empty: healthy). Reads every table; changes nothing."""
        return self.store.check(self.manifest().get("tables") or ())

    def repair(self, *, remove_orphans: bool = False) -> RepairReport:
        """Finish or undo interrupted writes; with ``remove_orphans``, also delete rows that
        belong to no document and no pending write (e.g. left by mm-retriever < 0.2).

        A missing or unreadable table is not repaired here (``IndexCorruptError``): nothing
        can tell which rows it held; restore it or rebuild the index.
        """
        report = RepairReport(problems=self.check())
        with self._writing(report):
            if remove_orphans:
                for doc_id in sorted(self.store.orphan_ids()):
                    self.store.delete_rows(doc_id)
                    report.removed_orphans.append(doc_id)
            if report.recovered or report.removed_orphans:
                self._writer().after_write(self.compact_fragments)
        return report

    def optimize(self, *, keep_versions_for: timedelta | float = timedelta(0)) -> OptimizeReport:
        """Compact every table, delete table versions older than ``keep_versions_for`` (a
        timedelta or seconds; 0 = every old version) and rebuild table indexes, under the writer
        lock. Committed documents are untouched; only superseded data files go.

        Readers of this index always read the newest version; a reader in another process that
        is in the middle of a query on an older version can fail that query if its files are
        deleted, so keep a few minutes (e.g. 300 s) where such readers run.
        """
        if not isinstance(keep_versions_for, timedelta):
            seconds = keep_versions_for
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise TypeError("keep_versions_for is a timedelta or a number of seconds")
            if keep_versions_for < 0:
                raise ValueError("keep_versions_for must not be negative")
            keep_versions_for = timedelta(seconds=keep_versions_for)
        before = sum(self.store.table_bytes().values())
        t0 = time.perf_counter()
        with self._writing():
            tables = self.store.optimize(keep_versions_for=keep_versions_for)
            for leg in self.legs.values():  # search indexes of the legs (ANN, full text)
                leg.refresh(self.store)
            ensure_document_text_index(self.store)
        return OptimizeReport(
            tables=tables,
            bytes_before=before,
            bytes_after=sum(self.store.table_bytes().values()),
            seconds=time.perf_counter() - t0,
        )

    def migrate(
        self,
        sources: Iterable[str | Path] = (),
        *,
        keep_versions_for: timedelta | float = timedelta(0),
    ) -> MigrationReport:
        """Bring an older index to the current storage layout (schema 1 -> 2): documents whose
        source file is found (where they were added from, or under ``sources``) are kept as
        that file instead of encoded page images; duplicate page text is emptied; then
        ``optimize(keep_versions_for=...)`` frees the space. Safe to interrupt and re-run.
        See ``mm_retriever.index.migrate``."""
        from mm_retriever.index.migrate import migrate_index

        return migrate_index(self, sources, keep_versions_for=keep_versions_for)

    # --------------------------------------------------------------- reading
    def documents(self) -> list[dict[str, Any]]:
        """One dict per indexed document: doc_id, source, title, n_pages, added_at, metadata."""
        return self.store.documents()

    def num_pages(self) -> int:
        """Pages of committed documents (rows of a write in progress do not count)."""
        n_pages = self.store.query(DOCUMENTS, columns=["n_pages"]).column("n_pages")
        return int(sum(n_pages.to_pylist()))

    def __len__(self) -> int:
        return self.store.count(DOCUMENTS)

    def retriever(self, **kwargs: Any) -> HybridRetriever:
        """A HybridRetriever over this index (kwargs: fusion, legs, weights, candidates, ...)."""
        from mm_retriever.ranking.hybrid import HybridRetriever

        return HybridRetriever(self, **kwargs)

    def explain_page(self, query: Any, doc_id: str, page_index: int, **kwargs: Any) -> Explanation:
        """Where each leg matched ``query`` on one page (:func:`.explain.explain_page`)."""
        from mm_retriever.explain import explain_page

        return explain_page(self, query, doc_id, page_index, **kwargs)

    def overlay_png(self, query: Any, doc_id: str, page_index: int, **kwargs: Any) -> bytes:
        """This page with the matches of ``query`` drawn over it, as PNG (:mod:`.explain`)."""
        from mm_retriever.explain import overlay_png

        return overlay_png(self, query, doc_id, page_index, **kwargs)

    def bytes_per_table(self) -> dict[str, int]:
        """Bytes on disk per table (local indexes)."""
        return self.store.table_bytes()


def interrupted_message(uri: str, marker: Mapping[str, Any]) -> str:
    """What to say about a half-created index (``interrupted_creation``)."""
    return (
        f"the creation of the index at {uri} (by {marker.get('owner', 'unknown')} at "
        f"{marker.get('started_at', 'unknown')}) was interrupted, so it holds no complete index "
        "and no documents. Creating the index again resets it (`mm-retriever index PATH "
        f"--index {uri}`, or MultimodalIndex.create()); `mm-retriever repair --index {uri}` "
        "resets it alone"
    )


def _complete(store: LanceDBStore) -> bool:
    """Whether the manifest is there, readable and whole (``create`` writes it in one commit)."""
    try:
        manifest = store.read_manifest()
    except IndexCorruptError:
        return False
    return bool(manifest) and "config" in manifest


def _reset_half_created(store: LanceDBStore, marker: Mapping[str, Any]) -> list[str]:
    """Drop what a killed ``create`` left (under the writer lock); says so in one warning."""
    dropped = store.drop_created()
    log.warning(
        "the creation of the index at %s (by %s at %s) was interrupted; removed the %d "
        "table(s) it had made",
        store.uri,
        marker.get("owner", "unknown"),
        marker.get("started_at", "unknown"),
        len(dropped),
    )
    return dropped
