"""Variable-length multivectors stored flat: one ``values [T_total, D]`` matrix plus ``offsets``.

Page ``i`` owns ``values[offsets[i]:offsets[i + 1]]`` — the layout Arrow already uses for a
``list<fixed_size_list>`` column, so no page is padded to the longest. Rows grow by appending
(amortised doubling, no full copy per add) and shrink by compaction on delete.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


class FlatMultiVectors:
    """A growable flat store of ``[n_i, D]`` matrices of one dtype (numpy, in RAM)."""

    def __init__(self, dim: int, dtype: str | np.dtype = "float16", capacity: int = 0) -> None:
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._values = np.empty((max(capacity, 0), self.dim), dtype=self.dtype)
        self._offsets = [0]
        self._offsets_np: np.ndarray | None = None
        self._used = 0

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def values(self) -> np.ndarray:
        """``[T_total, D]`` view of the stored vectors (no copy)."""
        return self._values[: self._used]

    @property
    def offsets(self) -> np.ndarray:
        """``int64 [N + 1]`` row starts (cached until the next change)."""
        if self._offsets_np is None:
            self._offsets_np = np.asarray(self._offsets, dtype=np.int64)
        return self._offsets_np

    @property
    def nbytes(self) -> int:
        """Bytes held: the used vectors plus the offsets."""
        return int(self._used * self.dim * self.dtype.itemsize + 8 * len(self._offsets))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def append(self, mats: Sequence[np.ndarray]) -> None:
        """Append one row per ``[n_i, D]`` matrix."""
        if not mats:
            return
        sizes = [int(m.shape[0]) for m in mats]
        need = self._used + sum(sizes)
        if need > self._values.shape[0]:
            grown = np.empty((max(need, 2 * self._values.shape[0], 1024), self.dim), self.dtype)
            grown[: self._used] = self._values[: self._used]
            self._values = grown
        pos = self._used
        for m, n in zip(mats, sizes, strict=True):
            if m.ndim != 2 or m.shape[1] != self.dim:
                raise ValueError(f"expected [n, {self.dim}] vectors, got shape {m.shape}")
            self._values[pos : pos + n] = m
            pos += n
            self._offsets.append(pos)
        self._used = pos
        self._offsets_np = None

    def append_flat(self, values: np.ndarray, lengths: np.ndarray) -> None:
        """Append rows given already flat (``values [sum(lengths), D]``)."""
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.append([values[s:e] for s, e in itertools.pairwise(starts)])

    def delete(self, rows: np.ndarray) -> None:
        """Remove the rows at positions ``rows`` (later rows move up; one compaction pass)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            return
        offsets = self.offsets
        keep_rows = np.ones(len(self), dtype=bool)
        keep_rows[rows] = False
        lengths = np.diff(offsets)
        keep_tok = np.repeat(keep_rows, lengths)
        kept = self._values[: self._used][keep_tok]
        self._values = kept
        self._used = kept.shape[0]
        new_offsets = np.zeros(int(keep_rows.sum()) + 1, dtype=np.int64)
        np.cumsum(lengths[keep_rows], out=new_offsets[1:])
        self._offsets = new_offsets.tolist()
        self._offsets_np = new_offsets

    def row(self, i: int) -> np.ndarray:
        o = self.offsets
        return self.values[o[i] : o[i + 1]]

    def take(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values, offsets)`` of the rows at ``rows``, in that order (a compact copy)."""
        o = self.offsets
        rows = np.asarray(rows, dtype=np.int64)
        parts = [self.values[o[r] : o[r + 1]] for r in rows]
        lengths = np.asarray([p.shape[0] for p in parts], dtype=np.int64)
        out_offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        values = np.concatenate(parts) if parts else np.zeros((0, self.dim), self.dtype)
        return values, out_offsets

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The stored vectors and offsets as arrays (names start with ``prefix``)."""
        return {f"{prefix}values": self.values, f"{prefix}offsets": self.offsets}

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], prefix: str) -> FlatMultiVectors:
        """A store over saved arrays (memory-mapped ones are used in place until changed)."""
        values = arrays[f"{prefix}values"]
        flat = cls(values.shape[1], values.dtype)
        flat._values = values
        flat._used = values.shape[0]
        flat._offsets_np = np.asarray(arrays[f"{prefix}offsets"], dtype=np.int64)
        flat._offsets = flat._offsets_np.tolist()
        return flat
