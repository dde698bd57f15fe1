"""LanceDB storage for an index: manifest, documents, pages, figures and one table per leg.

Write protocol (one document at a time): rows for ``pages``, ``figures`` and every ``leg_<name>``
table first, the ``documents`` row last. The ``documents`` row is the commit marker: a document
without one is not in the index, and its rows are orphans that ``cleanup_orphans`` deletes (the
index calls it when it can tell no other writer is running, and on any failed write).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mm_retriever.filters import quote_string
from mm_retriever.store.arrow import rows_to_table
from mm_retriever.store.schema import BASE_SCHEMAS, DOCUMENTS, MANIFEST, MANIFEST_SCHEMA

if TYPE_CHECKING:
    from lancedb.table import Table

log = logging.getLogger("mm_retriever")


def is_local_uri(uri: str | Path) -> bool:
    s = str(uri)
    return "://" not in s or s.startswith("file://")


def local_path(uri: str | Path) -> Path | None:
    """The folder of a local index, None for an object-store URI."""
    if not is_local_uri(uri):
        return None
    s = str(uri)
    return Path(s[len("file://") :] if s.startswith("file://") else s).expanduser()


class LanceDBStore:
    """An index's tables in one LanceDB database (a local folder or an object-store URI)."""

    def __init__(
        self,
        uri: str | Path,
        *,
        storage_options: Mapping[str, str] | None = None,
        read_consistency_interval: timedelta | None = None,
    ) -> None:
        import lancedb

        self.uri = str(uri)
        self.path = local_path(uri)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(
            str(self.path) if self.path is not None else self.uri,
            storage_options=dict(storage_options) if storage_options else None,
            read_consistency_interval=read_consistency_interval,
        )
        self._tables: dict[str, Table] = {}

    def __repr__(self) -> str:
        return f"LanceDBStore({self.uri!r})"

    # ------------------------------------------------------------------ tables
    def table_names(self) -> list[str]:
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
        """The open table ``name`` (handles are cached), or None if it does not exist."""
        tbl = self._tables.get(name)
        if tbl is None:
            if name not in self.table_names():
                return None
            tbl = self._tables[name] = self.db.open_table(name)
        return tbl

    def ensure_table(self, name: str, schema: pa.Schema) -> Table:
        tbl = self.table(name)
        if tbl is None:
            tbl = self.db.create_table(name, schema=schema, exist_ok=True)
            self._tables[name] = tbl
        return tbl

    def version(self, name: str) -> int:
        """Current version of a table (changes on every write); -1 if absent."""
        tbl = self.table(name)
        return -1 if tbl is None else int(tbl.version)

    def drop_all(self) -> None:
        for name in self.table_names():
            self.db.drop_table(name, ignore_missing=True)
        self._tables.clear()

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
        """Rows of ``name`` matching ``where`` (a where-clause built by mm_retriever.filters)."""
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
        return q.limit(limit).to_arrow()

    def count(self, name: str, where: str | None = None) -> int:
        tbl = self.table(name)
        return 0 if tbl is None else int(tbl.count_rows(where))

    def doc_tables(self) -> list[str]:
        """Every table that holds per-document rows (all but the manifest)."""
        return [n for n in self.table_names() if n != MANIFEST]

    # --------------------------------------------------------------- manifest
    def read_manifest(self) -> dict[str, Any] | None:
        tbl = self.table(MANIFEST)
        if tbl is None:
            return None
        rows = tbl.search().limit(None).to_arrow().to_pylist()
        return {r["key"]: json.loads(r["value"]) for r in rows} if rows else None

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
        rows = self.query(DOCUMENTS).to_pylist()
        for r in rows:
            r["metadata"] = json.loads(r["metadata"] or "{}")
        return sorted(rows, key=lambda r: (r["added_at"], r["source"], r["doc_id"]))

    def delete_document(self, doc_id: str) -> None:
        """Remove a document everywhere: its commit marker first, then every other table's rows."""
        where = f"doc_id = {quote_string(doc_id)}"
        for name in [DOCUMENTS, *[n for n in self.doc_tables() if n != DOCUMENTS]]:
            tbl = self.table(name)
            if tbl is not None and tbl.count_rows(where):
                tbl.delete(where)

    def orphan_ids(self) -> set[str]:
        """doc_ids with rows in some table but no ``documents`` row."""
        import pyarrow.compute as pc

        committed = self.document_ids()
        orphans: set[str] = set()
        for name in self.doc_tables():
            if name == DOCUMENTS:
                continue
            ids = self.query(name, columns=["doc_id"]).column("doc_id")
            orphans.update(pc.unique(ids).to_pylist())
        return {d for d in orphans - committed if d is not None}

    def cleanup_orphans(self) -> list[str]:
        """Delete rows of documents that were never committed; returns their ids."""
        orphans = sorted(self.orphan_ids())
        for doc_id in orphans:
            self.delete_document(doc_id)
        if orphans:
            log.warning("removed partial rows of %d uncommitted document(s)", len(orphans))
        return orphans

    def optimize(
        self, names: Sequence[str] | None = None, *, prune: bool = False, min_fragments: int = 1
    ) -> list[str]:
        """Compact tables made of many small fragments (each per-document append makes one).

        Only tables with at least ``min_fragments`` fragments are rewritten, so frequent small
        adds do not rewrite the whole table each time. ``prune`` also deletes every old table
        version at once (LanceDB otherwise keeps them for 7 days); do it only when no other
        process reads an older version. Returns the tables compacted.
        """
        done = []
        for name in names or self.table_names():
            tbl = self.table(name)
            if tbl is None:
                continue
            fragments = tbl.stats()["fragment_stats"]["num_fragments"]
            if prune or fragments >= max(min_fragments, 2):
                with warnings.catch_warnings():  # pruning every old version is asked for here
                    warnings.filterwarnings("ignore", message=".*removes every version.*")
                    tbl.optimize(cleanup_older_than=timedelta(0) if prune else None)
                done.append(name)
        return done

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

    @contextlib.contextmanager
    def writer_lock(self, blocking: bool = True) -> Iterator[bool]:
        """An inter-process lock held while writing (local indexes; a no-op for remote URIs).

        Yields whether the lock was acquired (always True when ``blocking``).
        """
        if self.path is None:
            yield True
            return
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / ".writer.lock"))
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (p for p in folder.rglob("*") if p.is_file())
