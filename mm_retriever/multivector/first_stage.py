"""Compact first stages held in RAM: they pick candidates that the exact rerank then scores.

- ``binary``: the sign bits of every page vector (16 bytes a 128-d vector, 1/16 of float16),
  scored by MaxSim of the float query against the +-1 vectors (asymmetric binary MaxSim; equal
  in ranking to Hamming MaxSim when the query is binarised too).
- ``mean``: ``segments`` L2-normalised means of contiguous runs of each page's vectors
  (``segments`` 1 is mean pooling: one vector a page), float16, scored by MaxSim over those few
  vectors. Cost per query grows with ``segments`` instead of with patches a page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.kernel import maxsim_scores
from mm_retriever.multivector.quantize import segment_means, sign_bits, unpack_signs

# Page vectors unpacked from sign bits per scoring step (keeps the +-1 block in cache-sized RAM).
_BINARY_STEP_TOKENS = 1 << 16


class BinaryFirstStage:
    kind = "binary"

    def __init__(self, dim: int) -> None:
        if dim % 8:
            raise ValueError(f"binary codes need a dim divisible by 8, got {dim}")
        self.codes = FlatMultiVectors(dim // 8, "uint8")

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes

    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        self.codes.append([sign_bits(m) for m in multivectors])

    def delete(self, rows: np.ndarray) -> None:
        self.codes.delete(rows)

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        """Binary MaxSim of every page (or ``rows``) in steps of about 64k page vectors."""
        q = np.asarray(query.float().cpu().numpy() if hasattr(query, "detach") else query)
        q = q.astype(np.float32, copy=False)
        offsets = self.codes.offsets
        order = np.arange(len(self.codes)) if rows is None else np.asarray(rows, np.int64)
        out = np.zeros(order.shape[0], dtype=np.float32)
        lengths = np.diff(offsets)[order]
        cum = np.cumsum(lengths)
        i = 0
        while i < order.shape[0]:
            base = cum[i - 1] if i else 0
            j = max(i + 1, int(np.searchsorted(cum, base + _BINARY_STEP_TOKENS, side="right")))
            block = order[i:j]
            if rows is None:  # contiguous: slice, no copy of the codes
                start, stop = offsets[block[0]], offsets[block[-1] + 1]
                bits, offs = self.codes.values[start:stop], offsets[block[0] : block[-1] + 2] - start
            else:
                bits, offs = self.codes.take(block)
            out[i:j] = maxsim_scores(q, unpack_signs(bits), offs)
            i = j
        return out

    def config(self) -> dict[str, Any]:
        return {"first_stage": self.kind}


class MeanFirstStage:
    kind = "mean"

    def __init__(self, dim: int, segments: int = 8) -> None:
        if segments < 1:
            raise ValueError(f"segments must be >= 1, got {segments}")
        self.segments = segments
        self.means = FlatMultiVectors(dim, "float16")

    def __len__(self) -> int:
        return len(self.means)

    @property
    def nbytes(self) -> int:
        return self.means.nbytes

    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        self.means.append([segment_means(m, self.segments) for m in multivectors])

    def delete(self, rows: np.ndarray) -> None:
        self.means.delete(rows)

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        return maxsim_scores(query, self.means.values, self.means.offsets, rows)

    def config(self) -> dict[str, Any]:
        return {"first_stage": self.kind, "segments": self.segments}


FIRST_STAGES = {"binary": BinaryFirstStage, "mean": MeanFirstStage}


def build_first_stage(
    kind: str, dim: int, segments: int = 8
) -> BinaryFirstStage | MeanFirstStage:
    if kind == "binary":
        return BinaryFirstStage(dim)
    if kind == "mean":
        return MeanFirstStage(dim, segments)
    raise ValueError(f"unknown first stage {kind!r}; choose one of {sorted(FIRST_STAGES)}")
