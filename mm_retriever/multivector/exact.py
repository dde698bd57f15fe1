"""Exact index: every page's multivector flat in RAM, scored by the exact MaxSim kernel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mm_retriever.multivector.base import Key, KeyedIndex, KeyedRows, top_k
from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.kernel import maxsim_scores
from mm_retriever.multivector.quantize import quantize_int8


class ExactIndex(KeyedIndex):
    """Exact MaxSim over all pages (or the allowed rows).

    RAM: every vector, as ``dtype`` (float16, float32, or int8 codes with one scale a page).
    """

    kind = "exact"

    def __init__(self, dim: int, dtype: str = "float16") -> None:
        if dtype not in ("float16", "float32", "int8"):
            raise ValueError(f"dtype must be float16, float32 or int8, got {dtype!r}")
        self.dim = dim
        self._rows = KeyedRows()
        self.vectors = FlatMultiVectors(dim, dtype)
        self._scales = np.zeros(0, dtype=np.float32) if dtype == "int8" else None

    @property
    def nbytes(self) -> int:
        scales = 0 if self._scales is None else self._scales.nbytes
        return self.vectors.nbytes + self._rows.nbytes + scales

    def add(
        self,
        keys: Sequence[Key],
        multivectors: Sequence[np.ndarray],
        scales: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        """Append pages; for an int8 index, ``scales`` marks ``multivectors`` as int8 codes."""
        if len(keys) != len(multivectors):
            raise ValueError(f"{len(keys)} keys for {len(multivectors)} multivectors")
        if self._scales is not None:
            if scales is None:
                codes, scales = (
                    zip(*map(quantize_int8, multivectors), strict=True) if keys else ((), ())
                )
                multivectors = list(codes)
            self._scales = np.concatenate([self._scales, np.asarray(scales, np.float32)])
        self._rows.append(keys)
        self.vectors.append([np.asarray(m, dtype=self.vectors.dtype) for m in multivectors])

    def delete(self, keys: Iterable[Key]) -> None:
        rows = self._rows.rows_of(keys)
        if rows.size:
            self.vectors.delete(rows)
            self._rows.remove_rows(rows)
            if self._scales is not None:
                self._scales = np.delete(self._scales, rows)

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        """Exact MaxSim of every page (or ``rows``, in that order)."""
        return maxsim_scores(
            query, self.vectors.values, self.vectors.offsets, rows, page_scale=self._scales
        )

    def search(
        self, query: Any, k: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0 or (allowed_rows is not None and allowed_rows.size == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.score(query, allowed_rows)
        best = top_k(scores, k)
        rows = best if allowed_rows is None else np.asarray(allowed_rows)[best]
        return rows, scores[best]

    def config(self) -> dict[str, Any]:
        return {"index": self.kind}
