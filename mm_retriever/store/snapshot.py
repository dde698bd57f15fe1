"""A value derived from one table and kept until the table's version changes (readers' caches).

Legs and the document prior keep in-memory state built from a table (a BM25 index, a matrix of
figure vectors, whether an index exists). Readers follow writers by keying that state on the
table's version: the store re-checks versions on each read, so another process's add or delete
shows up as a new version and the state is built again on the next search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class VersionedSnapshot(Generic[T]):
    """``build(table, version, *extra)`` cached per table version; concurrent first readers build
    it once.

    ``get(table, *extra)`` returns the value for the table's current version (None for a missing
    table); a reader of an unchanged version takes the cached value without waiting for a lock.
    """

    def __init__(self, build: Callable[..., T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._seen: tuple[int, T] | None = None  # (table version, value)

    def get(self, tbl: Any | None, *extra: Any) -> T | None:
        if tbl is None:
            return None
        version = int(tbl.version)
        seen = self._seen
        if seen is not None and seen[0] == version:
            return seen[1]
        with self._lock:
            seen = self._seen
            if seen is None or seen[0] != version:
                seen = self._seen = (version, self._build(tbl, version, *extra))
            return seen[1]

    @property
    def value(self) -> T | None:
        """The value last built (None before the first ``get``)."""
        seen = self._seen
        return seen[1] if seen is not None else None
