"""A read-only view of one table: what legs and the document prior read through.

Legs never hold LanceDB's ``Table``: the store hands them a ``TableReader`` (``store.reader``)
with the few reads a leg does (its version, a scan or a take of columns, a vector search, a
full-text search), a filter arriving as a where-clause made by ``store.filters``. Writing
(indexes, rows) stays with the store and the index's writer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mm_retriever.store.table_indexes import find_index

if TYPE_CHECKING:
    from lancedb.table import Table


class TableReader:
    """Reads of one open table (the version it had when it was handed out)."""

    def __init__(self, tbl: Table) -> None:
        self._tbl = tbl
        self.version = int(tbl.version)

    @property
    def schema(self) -> pa.Schema:
        return self._tbl.schema

    def count(self, where: str | None = None) -> int:
        """Rows (matching ``where``)."""
        return int(self._tbl.count_rows(where) if where else self._tbl.count_rows())

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every row, in storage order (``columns`` only)."""
        data = self._tbl.to_arrow()
        return data.select(list(columns)) if columns else data

    def scan(self, columns: Sequence[str] | None = None, where: str | None = None) -> pa.Table:
        """The rows matching ``where`` (all without), ``columns`` only."""
        q = self._tbl.search()
        if where:
            q = q.where(where)
        if columns:
            q = q.select(list(columns))
        return q.limit(None).to_arrow()

    def scan_batches(self, columns: Sequence[str], batch_size: int) -> Iterator[pa.RecordBatch]:
        """Every row's ``columns``, streamed in batches (the table is never held whole)."""
        return self._tbl.search().select(list(columns)).limit(None).to_batches(batch_size)

    def take(self, offsets: Sequence[int], columns: Sequence[str]) -> pa.Table:
        """The rows at ``offsets`` (positions in storage order), ``columns`` only."""
        return self._tbl.take_offsets([int(o) for o in offsets]).select(list(columns)).to_arrow()

    def vector_search(
        self,
        vector: Any,
        column: str,
        limit: int,
        columns: Sequence[str],
        *,
        where: str | None = None,
        metric: str = "cosine",
        nprobes: int | None = None,
        refine_factor: int | None = None,
    ) -> pa.Table:
        """The ``limit`` nearest rows to ``vector`` (``_distance`` among ``columns``): through the
        ANN index with ``nprobes``/``refine_factor``, else exactly; ``where`` filters first."""
        q = self._tbl.search(vector, vector_column_name=column).distance_type(metric)
        if nprobes is not None:
            q = q.nprobes(nprobes).refine_factor(refine_factor)
        else:
            q = q.bypass_vector_index()
        if where:
            q = q.where(where, prefilter=True)
        return q.select(list(columns)).limit(limit).to_arrow()

    def text_search(
        self, text: str, column: str, limit: int, columns: Sequence[str], where: str | None = None
    ) -> pa.Table:
        """The ``limit`` best rows for ``text`` by the full-text (BM25) index on ``column``
        (``_score`` among ``columns``); ``where`` filters first."""
        q = self._tbl.search(text, query_type="fts", fts_columns=column)
        if where:
            q = q.where(where, prefilter=True)
        return q.select(list(columns)).limit(limit).to_arrow()

    def has_index(self, column: str, kind: str) -> bool:
        """Whether an index of ``kind`` ("vector", "fts", "scalar") covers ``column``."""
        return find_index(self._tbl, column, kind) is not None
