"""LanceDB storage for an index: manifest, documents, pages, figures and one table per leg.

Write protocol (one document at a time, by a writer holding the writer lock):

1. a ``pending`` marker row (doc_id, op="add") is committed;
2. rows for ``pages``, ``figures`` and every ``leg_<name>`` table are written;
3. the ``documents`` row is written: the commit marker, a document without one is not in the
   index and readers never return its pages;
4. the pending marker is removed.

Deleting marks (op="delete"), removes the ``documents`` row first, then the other rows, then the
marker. A writer that dies leaves its marker behind; the next writer (under the lock) finishes
or undoes exactly the documents named by markers (``recover``). Nothing else is ever removed
automatically: opening, searching and ``info`` only read. Rows that no marker explains are
reported by ``check`` (``mm-retriever doctor``) and removed only on request (``repair``).

Readers follow writers: the connection checks for a newer table version on every read
(``read_consistency_interval``, 0 s for local folders, 5 s for object stores by default), so
``table(name).version`` changes as soon as another process commits, and legs that key caches on
it rebuild them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mm_retriever.errors import (
    IndexCorruptError,
    IndexReadOnlyError,
    MMRetrieverError,
    WriterBusyError,
)
from mm_retriever.metadata import loads as metadata_loads
from mm_retriever.store import array_states
from mm_retriever.store.arrow import rows_to_table
from mm_retriever.store.filters import quote_string, where_clause
from mm_retriever.store.reader import TableReader
from mm_retriever.store.schema import (
    BASE_SCHEMAS,
    CONTENT_HASH,
    DOCUMENTS,
    DOCUMENTS_SCHEMA,
    LEG_PREFIX,
    MANIFEST,
    MANIFEST_SCHEMA,
    PENDING,
    PENDING_SCHEMA,
    USER_METADATA,
    now_iso,
)
from mm_retriever.store.snapshot import VersionedSnapshot
from mm_retriever.store.table_indexes import ensure_fts_index, ensure_vector_index

if TYPE_CHECKING:
    from lancedb.table import Table

log = logging.getLogger("mm_retriever")

LOCK_FILE = ".writer.lock"
LEASE_TABLE = "writer_lease"
#: written first by ``MultimodalIndex.create`` and dropped last: while it is there and the
#: manifest is not complete, the folder holds only a half-created index
CREATING = "creating"
LOCAL_CONSISTENCY = timedelta(0)
REMOTE_CONSISTENCY = timedelta(seconds=5)
#: tables that hold no per-document rows
SERVICE_TABLES = frozenset({MANIFEST, PENDING, LEASE_TABLE, CREATING, array_states.STATE_TABLE})


def is_local_uri(uri: str | Path) -> bool:
    s = str(uri)
    return "://" not in s or s.startswith("file://")


def local_path(uri: str | Path) -> Path | None:
    """The folder of a local index, None for an object-store URI."""
    if not is_local_uri(uri):
        return None
    s = str(uri)
    return Path(s[len("file://") :] if s.startswith("file://") else s).expanduser()


def writer_id() -> str:
    """Who is writing: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DocumentView:
    """The committed documents at one version of the ``documents`` table (parallel lists)."""

    version: int
    doc_ids: list[str]
    sources: list[str]
    metadata: list[dict[str, Any]]


@dataclass
class Recovery:
    """What ``LanceDBStore.recover`` did with the markers of writes that died."""

    undone: list[str] = field(default_factory=list)  # adds rolled back (never committed)
    completed: list[str] = field(default_factory=list)  # deletes finished
    cleared: list[str] = field(default_factory=list)  # adds that had committed: marker only

    def __bool__(self) -> bool:
        return bool(self.undone or self.completed or self.cleared)


class LanceDBStore:
    """An index's tables in one LanceDB database (a local folder or an object-store URI).

    ``read_consistency_interval``: how stale a read may be (None: the LanceDB default, never
    refresh; default 0 s locally, 5 s on object stores, where each check is a request).
    Creating the store creates nothing on disk; writers create the folder and tables.
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        storage_options: Mapping[str, str] | None = None,
        read_consistency_interval: timedelta | str | None = "default",
    ) -> None:
        import lancedb

        self.uri = str(uri)
        self.path = local_path(uri)
        if read_consistency_interval == "default":
            read_consistency_interval = (
                LOCAL_CONSISTENCY if self.path is not None else REMOTE_CONSISTENCY
            )
        self.read_consistency_interval = read_consistency_interval
        self.storage_options = dict(storage_options) if storage_options else None
        self.db = lancedb.connect(
            str(self.path) if self.path is not None else self.uri,
            storage_options=self.storage_options,
            read_consistency_interval=read_consistency_interval,  # type: ignore[arg-type]
        )
        self._tables: dict[str, Table] = {}
        self._doc_view = VersionedSnapshot(self._build_document_view)

    def __repr__(self) -> str:
        return f"LanceDBStore({self.uri!r})"

    # ------------------------------------------------------------------ tables
    def table_names(self) -> list[str]:
        if self.path is not None and not self.path.is_dir():
            return []
        names: list[str] = []
        token = None
        while True:
            resp = self.db.list_tables(page_token=token)
            names.extend(resp.tables)
            token = resp.page_token
            if not token:
                return sorted(names)

    def has_table(self, name: str) -> bool:
        return name in self._tables or name in self.table_names()

    def table(self, name: str) -> Table | None:
        """The open table ``name`` (handles are cached), or None if it does not exist.

        A table that exists but cannot be opened raises ``IndexCorruptError``.
        """
        tbl = self._tables.get(name)
        if tbl is None:
            if name not in self.table_names():
                return None
            try:
                tbl = self.db.open_table(name)
            except Exception as exc:
                raise IndexCorruptError(self.uri, name, short_error(exc)) from exc
            self._tables[name] = tbl
        return tbl

    def reader(self, name: str) -> TableReader | None:
        """A read-only view of table ``name`` at its current version (None: no such table)."""
        tbl = self.table(name)
        return None if tbl is None else TableReader(tbl)

    def ensure_fts_index(self, name: str, column: str, options: Mapping[str, Any]) -> bool:
        """A writer's: the full-text index of ``column`` (``table_indexes.ensure_fts_index``)."""
        tbl = self.table(name)
        return tbl is not None and ensure_fts_index(tbl, column, options)

    def ensure_vector_index(self, name: str, column: str, **options: Any) -> bool:
        """A writer's: the ANN index of ``column`` (``table_indexes.ensure_vector_index``)."""
        tbl = self.table(name)
        return tbl is not None and bool(ensure_vector_index(tbl, column, **options))

    def ensure_table(self, name: str, schema: pa.Schema) -> Table:
        tbl = self.table(name)
        if tbl is None:
            if self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
            tbl = self.db.create_table(name, schema=schema, exist_ok=True)
            self._tables[name] = tbl
        return tbl

    def version(self, name: str) -> int:
        """Current version of a table (changes on every write); -1 if absent."""
        tbl = self.table(name)
        return -1 if tbl is None else int(tbl.version)

    def refresh(self) -> None:
        """Move every open table handle to its latest committed version (writers, under lock)."""
        for tbl in self._tables.values():
            tbl.checkout_latest()

    def drop_all(self) -> None:
        """Drop every table (but the object-store write lease, held by the caller)."""
        for name in self.table_names():
            if name != LEASE_TABLE:
                self.db.drop_table(name, ignore_missing=True)
                self._tables.pop(name, None)

    def add(
        self, name: str, rows: Sequence[Mapping[str, Any]] | pa.Table, schema: pa.Schema | None
    ) -> int:
        """Append rows to ``name`` (created on first use). Returns the number of rows written."""
        data = rows if isinstance(rows, pa.Table) else rows_to_table(list(rows), schema)
        if data.num_rows == 0:
            return 0
        if "doc_id" not in data.schema.names and name != MANIFEST:
            raise ValueError(f"rows for table '{name}' need a 'doc_id' column")
        tbl = self.table(name)
        if tbl is None:
            tbl = self.ensure_table(name, schema if schema is not None else data.schema)
        tbl.add(data)
        return data.num_rows

    def query(
        self,
        name: str,
        where: str | None = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Rows of ``name`` matching ``where`` (a where-clause from store.filters)."""
        tbl = self.table(name)
        if tbl is None:
            schema = BASE_SCHEMAS.get(name)
            if schema is None:
                return pa.table({c: pa.array([], pa.null()) for c in columns or []})
            return schema.empty_table().select(list(columns)) if columns else schema.empty_table()
        q = tbl.search()
        if where:
            q = q.where(where)
        if columns:
            q = q.select(list(columns))
        try:
            return q.limit(limit).to_arrow()
        except Exception as exc:
            self.diagnose(name, exc)
            raise

    def rows_matching(
        self,
        name: str,
        key: Mapping[str, str | int],
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``name`` whose columns equal ``key`` (e.g. ``{"doc_id": d, "page_index": 3}``),
        the where-clause made here from the values (strings or integers)."""
        kinds = {
            c: int if isinstance(v, int) and not isinstance(v, bool) else str
            for c, v in key.items()
        }
        return self.query(name, where_clause(key, kinds), columns, limit).to_pylist()

    def count(self, name: str, where: str | None = None) -> int:
        tbl = self.table(name)
        try:
            return 0 if tbl is None else int(tbl.count_rows(where))
        except Exception as exc:
            self.diagnose(name, exc)
            raise

    def doc_tables(self) -> list[str]:
        """Every table that holds per-document rows (all but manifest, pending, lease and the
        creation marker)."""
        return [n for n in self.table_names() if n not in SERVICE_TABLES]

    # ------------------------------------------------------------- damage
    def scan(self, name: str, *, full: bool = False) -> None:
        """Read table ``name`` to the end: one narrow column (``doc_id`` or the first), which
        opens every data file, or with ``full`` every column. Raises what LanceDB raises."""
        tbl = self.table(name)
        if tbl is None:
            return
        q = tbl.search()
        if not full:
            names = tbl.schema.names
            q = q.select(["doc_id" if "doc_id" in names else names[0]])
        q.limit(None).to_arrow()

    def damaged_table(
        self, names: Sequence[str] | None = None, *, full: bool = True
    ) -> IndexCorruptError | None:
        """The first of ``names`` (default: every table) that cannot be read to the end, as
        an ``IndexCorruptError``; None when all read. A narrow pass first (it opens every data
        file), then, with ``full``, every column."""
        names = list(names) if names is not None else self.table_names()
        for wide in (False, True) if full else (False,):
            for name in names:
                try:
                    self.scan(name, full=wide)
                except IndexCorruptError as exc:
                    return exc
                except Exception as exc:
                    return IndexCorruptError(self.uri, name, short_error(exc))
        return None

    def diagnose(self, name: str, exc: BaseException) -> None:
        """After ``exc`` from a read of ``name``: raise ``IndexCorruptError`` naming the table
        when it cannot be read to the end; return (the caller re-raises ``exc``) when it can."""
        if _may_be_damage(exc) and (damage := self.damaged_table([name])):
            raise damage from exc

    def verify_data(self) -> None:
        """Raise ``IndexCorruptError`` naming the first table whose data files cannot be read:
        every file of every table is opened and one narrow column read (``mm-retriever info``;
        ``check`` reads every column)."""
        damage = self.damaged_table(full=False)
        if damage is not None:
            raise damage

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around a read that spans tables (a search): an error that a damaged table explains
        becomes ``IndexCorruptError`` naming that table; any other error passes unchanged."""
        try:
            yield
        except Exception as exc:
            if _may_be_damage(exc) and (damage := self.damaged_table()):
                raise damage from exc
            raise

    # ------------------------------------------------------------- creation
    def mark_creating(self) -> None:
        """Commit the creation marker (before any other table of a new index)."""
        row = {"doc_id": "", "op": "create", "started_at": now_iso(), "owner": writer_id()}
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        # "overwrite" only over an earlier marker: on a new table lance logs a WARN for it
        mode = "overwrite" if CREATING in self.table_names() else "create"
        tbl = self.db.create_table(CREATING, data=rows_to_table([row], PENDING_SCHEMA), mode=mode)
        self._tables[CREATING] = tbl

    def creation_marker(self) -> dict[str, Any] | None:
        """Who started creating this index and when, while the marker is there (else None)."""
        if CREATING not in self.table_names():
            return None
        try:
            rows = self.db.open_table(CREATING).search().limit(1).to_arrow().to_pylist()
        except Exception:  # killed while the marker itself was written
            rows = []
        return rows[0] if rows else {"owner": "unknown", "started_at": "unknown"}

    def clear_creating(self) -> None:
        """Drop the creation marker (the index is complete)."""
        self._drop(CREATING)

    def drop_created(self) -> list[str]:
        """Drop every table that ``MultimodalIndex.create`` makes (the base tables, ``leg_*``,
        the marker last); tables of other names are left alone. Only for a half-created index,
        under the writer lock. Returns the tables dropped."""
        ours = set(BASE_SCHEMAS) | {PENDING, MANIFEST}
        dropped = [n for n in self.table_names() if n in ours or n.startswith(LEG_PREFIX)]
        for name in dropped:
            self._drop(name)
        self.clear_creating()
        return dropped

    def _drop(self, name: str) -> None:
        """Drop a table, also one whose files are half written (local: remove its folder)."""
        self._tables.pop(name, None)
        try:
            self.db.drop_table(name, ignore_missing=True)
        except Exception:
            if self.path is None:
                raise
        if self.path is not None:
            shutil.rmtree(self.path / f"{name}.lance", ignore_errors=True)

    # --------------------------------------------------------------- manifest
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest's keys, or None when there is no manifest table.

        An unreadable manifest (a damaged table, a value that is not JSON) raises
        ``IndexCorruptError``; it never reads as "no index".
        """
        tbl = self.table(MANIFEST)
        if tbl is None:
            return None
        try:
            rows = tbl.search().limit(None).to_arrow().to_pylist()
            return {r["key"]: json.loads(r["value"]) for r in rows} if rows else None
        except Exception as exc:
            raise IndexCorruptError(self.uri, MANIFEST, short_error(exc)) from exc

    def write_manifest(self, values: Mapping[str, Any]) -> None:
        """Insert or update manifest keys (one atomic merge)."""
        data = pa.Table.from_pylist(
            [
                {"key": k, "value": json.dumps(v, sort_keys=True, default=str)}
                for k, v in values.items()
            ],
            schema=MANIFEST_SCHEMA,
        )
        tbl = self.ensure_table(MANIFEST, MANIFEST_SCHEMA)
        (
            tbl.merge_insert("key")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )

    # -------------------------------------------------------------- documents
    def document_ids(self) -> set[str]:
        return set(self.query(DOCUMENTS, columns=["doc_id"]).column("doc_id").to_pylist())

    def has_document(self, doc_id: str) -> bool:
        return self.count(DOCUMENTS, f"doc_id = {quote_string(doc_id)}") > 0

    def documents(self) -> list[dict[str, Any]]:
        """One dict per committed document: doc_id, source, title, n_pages, added_at,
        ``metadata`` (the user's, ``{}`` when none), ``file_metadata`` (read from the file) and
        ``content_hash`` (the file's hash; the doc_id unless the user chose the id)."""
        rows = self.query(DOCUMENTS).to_pylist()
        for r in rows:
            r["file_metadata"] = json.loads(r.pop("metadata") or "{}")
            r["metadata"] = metadata_loads(r.pop(USER_METADATA, None))
            r["content_hash"] = r.get(CONTENT_HASH) or r["doc_id"]
        return sorted(rows, key=lambda r: (r["added_at"], r["source"], r["doc_id"]))

    def has_column(self, name: str, column: str) -> bool:
        tbl = self.table(name)
        return tbl is not None and column in tbl.schema.names

    def ensure_document_columns(self) -> list[str]:
        """Add the ``documents`` columns newer than the table (an index written before them):
        null in existing rows, which read as no metadata and the doc_id as content hash. Call
        under the writer lock (readers never write). Returns the columns added."""
        tbl = self.table(DOCUMENTS)
        if tbl is None:
            return []
        have = set(tbl.schema.names)
        missing = [f for f in DOCUMENTS_SCHEMA if f.name not in have]
        if missing:
            tbl.add_columns(missing)
            log.info("documents table: added column(s) %s", ", ".join(f.name for f in missing))
        return [f.name for f in missing]

    def document_view(self) -> DocumentView:
        """doc_ids, sources and parsed user metadata of every committed document, read once
        per version of the ``documents`` table (filters on metadata run over it)."""
        view = self._doc_view.get(self.reader(DOCUMENTS))
        return view if view is not None else DocumentView(-1, [], [], [])

    @staticmethod
    def _build_document_view(reader: TableReader, version: int) -> DocumentView:
        columns = ["doc_id", "source"]
        if USER_METADATA in reader.schema.names:  # absent in an index written before it
            columns.append(USER_METADATA)
        rows = reader.scan(columns)
        metas = rows.column(USER_METADATA).to_pylist() if USER_METADATA in columns else None
        return DocumentView(
            version=version,
            doc_ids=rows.column("doc_id").to_pylist(),
            sources=rows.column("source").to_pylist(),
            metadata=[metadata_loads(m) for m in metas] if metas else [{}] * rows.num_rows,
        )

    def matching_documents(
        self, where: str | None, metadata: Callable[[Mapping[str, Any]], bool] | None = None
    ) -> list[str]:
        """Ids of the committed documents whose row matches ``where`` (a documents-table
        where-clause) and whose user metadata satisfies ``metadata`` (a predicate), sorted."""
        view = self.document_view()
        ids: Iterable[str] = view.doc_ids
        if metadata is not None:
            ids = [d for d, m in zip(view.doc_ids, view.metadata, strict=True) if metadata(m)]
        if where:
            allowed = set(self.query(DOCUMENTS, where, ["doc_id"]).column("doc_id").to_pylist())
            ids = [d for d in ids if d in allowed]
        return sorted(ids)

    def document_metadata(self, doc_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The user metadata of ``doc_ids`` (committed ones only)."""
        view = self.document_view()
        wanted = set(doc_ids)
        return {d: m for d, m in zip(view.doc_ids, view.metadata, strict=True) if d in wanted}

    def set_document_metadata(self, doc_id: str, metadata_json: str) -> None:
        """Replace a document's user metadata (one atomic update; under the writer lock)."""
        tbl = self.table(DOCUMENTS)
        if tbl is None:
            raise KeyError(doc_id)
        tbl.update(where=f"doc_id = {quote_string(doc_id)}", values={USER_METADATA: metadata_json})

    def content_hashes(self) -> dict[str, str]:
        """content hash -> doc_id of every committed document (dedup of re-added files)."""
        columns = ["doc_id"]
        if self.has_column(DOCUMENTS, CONTENT_HASH):
            columns.append(CONTENT_HASH)
        rows = self.query(DOCUMENTS, columns=columns).to_pylist()
        return {r.get(CONTENT_HASH) or r["doc_id"]: r["doc_id"] for r in rows}

    def delete_rows(self, doc_id: str) -> None:
        """Remove a document's rows from every table but ``documents`` (an uncommitted write)."""
        where = f"doc_id = {quote_string(doc_id)}"
        for name in self.doc_tables():
            if name == DOCUMENTS:
                continue
            tbl = self.table(name)
            if tbl is not None and tbl.count_rows(where):
                tbl.delete(where)

    def delete_document(self, doc_id: str) -> None:
        """Remove a document everywhere (call under the writer lock).

        A pending "delete" marker is committed first, so a writer that dies half way leaves a
        marker that the next writer completes; then the commit marker (``documents`` row), so
        readers stop returning the document at once, then the other rows, then the marker.
        """
        from mm_retriever import faults

        self.mark_pending(doc_id, "delete")
        faults.point("delete:marked")
        tbl = self.table(DOCUMENTS)
        where = f"doc_id = {quote_string(doc_id)}"
        if tbl is not None and tbl.count_rows(where):
            tbl.delete(where)
        faults.point("delete:uncommitted")
        self.delete_rows(doc_id)
        faults.point("delete:rows")
        self.clear_pending(doc_id)

    # --------------------------------------------------------- pending writes
    def mark_pending(self, doc_id: str, op: str) -> None:
        """Commit a marker saying this writer is about to add or delete ``doc_id``."""
        row = {"doc_id": doc_id, "op": op, "started_at": now_iso(), "owner": writer_id()}
        self.add(PENDING, [row], PENDING_SCHEMA)

    def clear_pending(self, doc_id: str) -> None:
        tbl = self.table(PENDING)
        if tbl is not None:
            tbl.delete(f"doc_id = {quote_string(doc_id)}")

    def pending(self) -> list[dict[str, Any]]:
        """Markers of writes in progress, or left by writers that died."""
        return self.query(PENDING).to_pylist()

    def recover(self) -> Recovery:
        """Finish or undo the writes that pending markers name (only under the writer lock).

        An "add" whose ``documents`` row exists had committed: only its marker goes. An "add"
        without one never committed: its rows are removed. A "delete" is completed. Rows that
        no marker names are left alone.
        """
        done = Recovery()
        markers = self.pending()
        if not markers:
            return done
        committed = self.document_ids()
        for doc_id, op in sorted({(m["doc_id"], m["op"]) for m in markers}):
            if op == "delete":
                self.delete_document(doc_id)
                done.completed.append(doc_id)
            elif doc_id in committed:
                done.cleared.append(doc_id)
            else:
                self.delete_rows(doc_id)
                done.undone.append(doc_id)
            self.clear_pending(doc_id)
        if done:
            log.warning(
                "recovered interrupted writes: %d add(s) undone, %d delete(s) completed",
                len(done.undone),
                len(done.completed),
            )
        return done

    def orphan_ids(self) -> set[str]:
        """doc_ids with rows in some table but neither a ``documents`` row nor a marker."""
        import pyarrow.compute as pc

        committed = self.document_ids() | {m["doc_id"] for m in self.pending()}
        orphans: set[str] = set()
        for name in self.doc_tables():
            if name == DOCUMENTS:
                continue
            ids = self.query(name, columns=["doc_id"]).column("doc_id")
            orphans.update(pc.unique(ids).to_pylist())
        return {d for d in orphans - committed if d is not None}

    # ------------------------------------------------------------- integrity
    def check(self, expected: Sequence[str] = ()) -> list[str]:
        """Problems found (empty: healthy): tables missing or unreadable, unexplained rows.

        ``expected``: tables that must exist (the manifest's list). Every table is opened and
        scanned fully, so this reads the whole index (``mm-retriever doctor``).
        """
        problems: list[str] = []
        names = set(self.table_names())
        for name in expected:
            if name not in names:
                problems.append(f"table '{name}' is missing")
        orphaned = any(n not in SERVICE_TABLES for n in names)
        if DOCUMENTS not in names and orphaned and DOCUMENTS not in expected:
            problems.append(f"table '{DOCUMENTS}' is missing")
        for name in sorted(names):
            try:
                tbl = self.table(name)
                if tbl is not None:
                    tbl.search().limit(None).to_arrow()
            except Exception as exc:
                problems.append(f"table '{name}' is unreadable ({short_error(exc)})")
        if not problems:
            for m in self.pending():
                problems.append(
                    f"interrupted {m['op']} of document {m['doc_id']} by {m['owner']} at "
                    f"{m['started_at']} (the next write completes or undoes it)"
                )
            orphans = self.orphan_ids()
            if orphans:
                problems.append(
                    f"{len(orphans)} document id(s) have rows but no documents row and no "
                    f"pending marker: {', '.join(sorted(orphans)[:10])}"
                )
        return problems

    def verify(self, expected: Sequence[str] = ()) -> None:
        """Raise ``IndexCorruptError`` when a table the index needs is missing or cannot be opened.

        Cheap (opens tables, reads no data); run on every open and before every write.
        """
        names = set(self.table_names())
        for name in expected:
            if name not in names:
                raise IndexCorruptError(self.uri, name, "the table is missing")
        if DOCUMENTS not in names and any(n not in SERVICE_TABLES for n in names):
            raise IndexCorruptError(self.uri, DOCUMENTS, "the table is missing")
        for name in sorted(names):
            tbl = self.table(name)
            try:
                if tbl is not None:
                    tbl.count_rows()
            except Exception as exc:
                raise IndexCorruptError(self.uri, name, short_error(exc)) from exc

    def optimize(
        self,
        names: Sequence[str] | None = None,
        *,
        prune: bool = False,
        min_fragments: int = 1,
        keep_versions_for: timedelta | None = None,
    ) -> list[str]:
        """Compact tables made of many small fragments (each per-document append makes one).

        Only tables with at least ``min_fragments`` fragments are rewritten, so frequent small
        adds do not rewrite the whole table each time. ``keep_versions_for`` deletes table
        versions older than that (LanceDB otherwise keeps them for 7 days) and makes every table
        count; ``prune`` is ``keep_versions_for=0``: every old version at once — do it only when
        no other process reads an older version. Returns the tables compacted.
        """
        if prune:
            keep_versions_for = timedelta(0)
        done = []
        for name in names or self.table_names():
            if name == LEASE_TABLE:
                continue
            tbl = self.table(name)
            if tbl is None:
                continue
            fragments = tbl.stats()["fragment_stats"]["num_fragments"]
            if keep_versions_for is not None or fragments >= max(min_fragments, 2):
                with warnings.catch_warnings():  # pruning old versions is asked for here
                    warnings.filterwarnings("ignore", message=".*removes every version.*")
                    tbl.optimize(cleanup_older_than=keep_versions_for)
                done.append(name)
        return done

    # ----------------------------------------------------------- saved states
    def save_state(
        self, leg: str, version: int, key: str, arrays: Mapping[str, np.ndarray]
    ) -> None:
        """A writer's: save ``arrays`` as ``leg``'s state of table version ``version`` under the
        config ``key`` in the index's ``page_index_state`` table (``store.array_states``)."""
        tbl = self.ensure_table(array_states.STATE_TABLE, array_states.STATE_SCHEMA)
        array_states.save(tbl, leg, key, version, dict(arrays))

    def load_state(
        self, leg: str, max_version: int, key: str
    ) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest saved state of ``leg`` under ``key`` at a version <= ``max_version``."""
        tbl = self.table(array_states.STATE_TABLE)
        return None if tbl is None else array_states.load(tbl, leg, key, max_version)

    def has_state(self, leg: str, key: str) -> bool:
        """Whether a state of ``leg`` under ``key`` is saved."""
        tbl = self.table(array_states.STATE_TABLE)
        return tbl is not None and array_states.has(tbl, leg, key)

    # ------------------------------------------------------------------ sizes
    def table_bytes(self) -> dict[str, int]:
        """Bytes on disk per table (local indexes only; empty otherwise)."""
        if self.path is None:
            return {}
        out = {}
        for name in self.table_names():
            folder = self.path / f"{name}.lance"
            out[name] = sum(f.stat().st_size for f in _files(folder))
        return out

    # ------------------------------------------------------------------ locks
    @contextlib.contextmanager
    def writer_lock(self, timeout: float = -1) -> Iterator[None]:
        """Hold the index's single-writer lock while writing.

        Local folders: an OS file lock (``.writer.lock``); waits for another writer to finish
        (``timeout`` seconds, -1: forever). Object stores have no such lock: a lease table is
        created atomically (Lance commits refuse to create a table that exists); while another
        writer holds it, ``WriterBusyError`` names the holder. Every table handle is refreshed
        to its latest version once the lock is held.
        """
        lock = self._local_lock if self.path is not None else self._lease
        with lock(timeout):
            self.refresh()
            yield

    @contextlib.contextmanager
    def _local_lock(self, timeout: float) -> Iterator[None]:
        from filelock import FileLock, Timeout

        assert self.path is not None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.path / LOCK_FILE))
            lock.acquire(timeout=timeout)
        except Timeout:
            raise WriterBusyError(
                self.uri, f"another process holds {self.path / LOCK_FILE}"
            ) from None
        except OSError as exc:
            raise IndexReadOnlyError(self.uri, str(exc)) from exc
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def _lease(self, timeout: float) -> Iterator[None]:
        owner = writer_id()
        row = {"doc_id": "", "op": "lease", "started_at": now_iso(), "owner": owner}
        data = rows_to_table([row], PENDING_SCHEMA)
        try:
            self.db.create_table(LEASE_TABLE, data=data, exist_ok=False)
        except (ValueError, OSError) as exc:
            holder = self.lease_holder()
            if holder is None:  # not a conflict: e.g. read-only credentials
                raise IndexReadOnlyError(self.uri, str(exc)) from exc
            raise WriterBusyError(
                self.uri,
                f"writer {holder['owner']} holds the write lease since {holder['started_at']}"
                " (object stores allow one writer at a time; if that writer died, run "
                f"`mm-retriever repair --index {self.uri} --break-lock`)",
            ) from None
        try:
            yield
        finally:
            self.break_lease()

    def lease_holder(self) -> dict[str, Any] | None:
        """Who holds the object-store write lease (None: nobody)."""
        if LEASE_TABLE not in self.table_names():
            return None
        try:
            rows = self.db.open_table(LEASE_TABLE).search().limit(1).to_arrow().to_pylist()
        except Exception:
            return {"owner": "unknown", "started_at": "unknown"}
        return rows[0] if rows else {"owner": "unknown", "started_at": "unknown"}

    def break_lease(self) -> bool:
        """Remove the object-store write lease (after its writer died). True if one was held."""
        held = LEASE_TABLE in self.table_names()
        if held:
            self.db.drop_table(LEASE_TABLE, ignore_missing=True)
        self._tables.pop(LEASE_TABLE, None)
        return held


def _may_be_damage(exc: BaseException) -> bool:
    """Whether a damaged table could explain ``exc`` (not our own errors, not bad arguments)."""
    return not isinstance(exc, MMRetrieverError | TypeError | KeyError | AttributeError)


def short_error(exc: BaseException) -> str:
    """An exception as one short line (LanceDB's messages carry Rust source paths)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for cut in (", /rustc/", " /rustc/", ", /home/", ", /root/"):
        text = text.split(cut)[0]
    text = text.removeprefix("lance error: ")
    return f"{type(exc).__name__}: {text[:300]}"


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in folder.rglob("*") if p.is_file())
