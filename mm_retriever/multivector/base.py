"""The multivector index seam: what every page-leg index (exact, two-stage) offers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

Key = tuple[str, int]  # (doc_id, page_index)


@runtime_checkable
class MultiVectorIndex(Protocol):
    """Pages' multivectors, searchable by MaxSim. Row ``i`` is the ``i``-th key in ``keys``.

    Rows follow the order of the leg's Lance table (adds append, deletes close the gap), so a
    row number is also the page's offset in that table.
    """

    kind: str

    def __len__(self) -> int: ...

    @property
    def keys(self) -> list[Key]: ...

    @property
    def nbytes(self) -> int:
        """Bytes this index holds in RAM."""
        ...

    def add(self, keys: Sequence[Key], multivectors: Sequence[np.ndarray]) -> None:
        """Append pages (their keys must be new)."""
        ...

    def delete(self, keys: Iterable[Key]) -> None:
        """Remove pages by key (unknown keys are ignored)."""
        ...

    def search(
        self, query: Any, k: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of the best ``k`` pages (among ``allowed_rows``), best first."""
        ...

    def config(self) -> dict[str, Any]: ...


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first (ties: lower position first)."""
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    return part[np.lexsort((part, -scores[part]))].astype(np.int64)


class KeyedRows:
    """Keys in row order plus a key -> row map; shared bookkeeping of the index types."""

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._row_of: dict[Key, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> list[Key]:
        return self._keys

    def row_of(self, key: Key) -> int | None:
        return self._row_of.get(key)

    def rows_of(self, keys: Iterable[Key]) -> np.ndarray:
        """Rows of the known keys among ``keys`` (sorted, unknown ones dropped)."""
        found = (self._row_of.get((str(d), int(p))) for d, p in keys)
        return np.asarray(sorted(r for r in found if r is not None), dtype=np.int64)

    def append(self, keys: Sequence[Key]) -> None:
        keys = [(str(d), int(p)) for d, p in keys]
        clash = [k for k in keys if k in self._row_of]
        if clash or len(set(keys)) != len(keys):
            raise ValueError(f"page keys already in the index: {(clash or keys)[:3]}")
        start = len(self._keys)
        self._keys.extend(keys)
        self._row_of.update((k, start + i) for i, k in enumerate(keys))

    def remove_rows(self, rows: np.ndarray) -> None:
        drop = set(int(r) for r in rows)
        self._keys = [k for i, k in enumerate(self._keys) if i not in drop]
        self._row_of = {k: i for i, k in enumerate(self._keys)}

    @property
    def nbytes(self) -> int:
        """Rough bytes of the keys (strings shared per document) and the key -> row map."""
        return 120 * len(self._keys)


class KeyedIndex:
    """What every index shares: page keys in row order (``_rows``), their count and lookup."""

    _rows: KeyedRows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def keys(self) -> list[Key]:
        return self._rows.keys

    def rows_of(self, keys: Iterable[Key]) -> np.ndarray:
        return self._rows.rows_of(keys)
