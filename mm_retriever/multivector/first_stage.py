"""Compact first stages held in RAM: they pick candidates that the exact rerank then scores.

- ``binary``: the sign bits of every page vector (16 bytes a 128-d vector, 1/16 of float16),
  scored by MaxSim of the float query against the +-1 vectors (asymmetric binary MaxSim; equal
  in ranking to Hamming MaxSim when the query is binarised too).
- ``mean``: ``segments`` L2-normalised means of contiguous runs of each page's vectors
  (``segments`` 1 is mean pooling: one vector a page), float16, scored by MaxSim over those few
  vectors. Cost per query grows with ``segments`` instead of with patches a page.
- ``ann``: the same segment means, also in an HNSW graph (usearch, int8 vectors); each query
  vector fetches its ``probe`` nearest segment vectors, their pages are the candidates, ranked by
  MaxSim over their segment means. Cost per query barely grows with the corpus.

- ``cascade``: ``mean`` picks ``prefilter`` pages, ``binary`` MaxSim keeps the best of those:
  about the recall of ``binary`` at about the cost of ``mean``; RAM is both.
- ``ivf``: centroid inverted lists (``mm_retriever.multivector.ivf``): only pages on the lists of
  the query vectors' nearest centres are scored, so the cost follows the candidates, not the corpus.
- ``ivf_binary``: ``ivf`` picks ``prefilter`` pages, ``binary`` MaxSim keeps the best of those.

Every first stage offers ``candidates(query, n, allowed_rows)``: rows of its ``n`` best pages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mm_retriever.errors import MissingExtraError
from mm_retriever.multivector.base import top_k
from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.ivf import IvfFirstStage
from mm_retriever.multivector.kernel import binary_maxsim, maxsim_scores
from mm_retriever.multivector.quantize import segment_means, sign_bits


class _ScanFirstStage:
    """A first stage that scores every (allowed) page and keeps the best."""

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def candidates(self, query: Any, n: int, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        best = top_k(self.score(query, allowed_rows), n)
        return best if allowed_rows is None else np.asarray(allowed_rows)[best]


class BinaryFirstStage(_ScanFirstStage):
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

    def state(self) -> dict[str, np.ndarray]:
        return self.codes.state("codes.")

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.codes = FlatMultiVectors.restore(arrays, "codes.")

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        """Binary MaxSim of every page (or ``rows``): float query against the +-1 vectors."""
        return binary_maxsim(query, self.codes.values, self.codes.offsets, rows)

    def config(self) -> dict[str, Any]:
        return {"first_stage": self.kind}


class MeanFirstStage(_ScanFirstStage):
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

    def state(self) -> dict[str, np.ndarray]:
        return self.means.state("means.")

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.means = FlatMultiVectors.restore(arrays, "means.")

    def score(self, query: Any, rows: np.ndarray | None = None) -> np.ndarray:
        return maxsim_scores(query, self.means.values, self.means.offsets, rows)

    def config(self) -> dict[str, Any]:
        return {"first_stage": self.kind, "segments": self.segments}


class AnnFirstStage(MeanFirstStage):
    """Segment means in an HNSW graph: candidates from each query vector's nearest neighbours.

    Graph keys are stable page ids times ``segments`` plus the segment, so deletes remove
    exactly a page's vectors and rows can shift without touching the graph. A filtered search
    (``allowed_rows``) scans the allowed pages' segment means instead, so a narrow filter never
    comes back short.
    """

    kind = "ann"

    def __init__(self, dim: int, segments: int = 8, probe: int = 64) -> None:
        super().__init__(dim, segments)
        try:
            from usearch.index import Index
        except ImportError as exc:  # pragma: no cover - the dev group installs it
            raise MissingExtraError("usearch", "scale", "the 'ann' first stage") from exc
        self.probe = probe
        self.graph = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16)
        self._ids = np.zeros(0, dtype=np.int64)  # page id of each row
        self._row_of_id = np.zeros(0, dtype=np.int64)  # row of each page id (-1: deleted)
        self._next_id = 0

    @property
    def nbytes(self) -> int:
        return int(
            super().nbytes + self.graph.memory_usage + self._ids.nbytes + self._row_of_id.nbytes
        )

    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        means = [segment_means(m, self.segments) for m in multivectors]
        self.means.append(means)
        ids = np.arange(self._next_id, self._next_id + len(means), dtype=np.int64)
        self._next_id += len(means)
        rows = np.arange(self._ids.size, self._ids.size + len(means), dtype=np.int64)
        self._ids = np.concatenate([self._ids, ids])
        self._row_of_id = np.concatenate([self._row_of_id, rows])
        keys = np.concatenate(
            [pid * self.segments + np.arange(m.shape[0]) for pid, m in zip(ids, means, strict=True)]
        ).astype(np.uint64)
        if keys.size:
            self.graph.add(keys, np.concatenate(means).astype(np.float32), threads=0)

    def delete(self, rows: np.ndarray) -> None:
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            return
        gone = self._ids[rows]
        keys = (gone[:, None] * self.segments + np.arange(self.segments)).reshape(-1)
        present = [int(k) for k in keys if k in self.graph]
        if present:
            self.graph.remove(np.asarray(present, dtype=np.uint64))
        super().delete(rows)
        self._ids = np.delete(self._ids, rows)
        self._row_of_id[gone] = -1
        self._row_of_id[self._ids] = np.arange(self._ids.size)

    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError("the ann first stage is rebuilt, not saved")

    def candidates(self, query: Any, n: int, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        if allowed_rows is not None:
            return super().candidates(query, n, allowed_rows)
        q = np.asarray(query.float().cpu().numpy() if hasattr(query, "detach") else query)
        found = self.graph.search(q.astype(np.float32), self.probe, threads=0)
        keys = np.asarray(found.keys).reshape(-1)
        keys = keys[keys != np.iinfo(np.uint64).max]  # usearch pads short results
        rows = self._row_of_id[np.unique(keys.astype(np.int64) // self.segments)]
        rows = rows[rows >= 0]
        if rows.size <= n:
            return rows
        return rows[top_k(self.score(query, rows), n)]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "probe": self.probe}


class CascadeFirstStage:
    """Segment means pick ``prefilter`` pages; binary MaxSim over those keeps the best ``n``."""

    kind = "cascade"

    def __init__(self, dim: int, segments: int = 8, prefilter: int = 3000) -> None:
        if prefilter < 1:
            raise ValueError(f"prefilter must be >= 1, got {prefilter}")
        self.prefilter = prefilter
        self.coarse: MeanFirstStage | IvfFirstStage = MeanFirstStage(dim, segments)
        self.binary = BinaryFirstStage(dim)

    def __len__(self) -> int:
        return len(self.coarse)

    @property
    def nbytes(self) -> int:
        return self.coarse.nbytes + self.binary.nbytes

    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        self.coarse.add(multivectors)
        self.binary.add(multivectors)

    def delete(self, rows: np.ndarray) -> None:
        self.coarse.delete(rows)
        self.binary.delete(rows)

    def state(self) -> dict[str, np.ndarray]:
        parts = {"coarse.": self.coarse.state(), "binary.": self.binary.state()}
        return {p + k: v for p, arrays in parts.items() for k, v in arrays.items()}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        for prefix, part in (("coarse.", self.coarse), ("binary.", self.binary)):
            part.restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})

    def candidates(self, query: Any, n: int, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        pre = np.sort(self.coarse.candidates(query, max(n, self.prefilter), allowed_rows))
        return pre[top_k(self.binary.score(query, pre), n)]

    def config(self) -> dict[str, Any]:
        coarse = {k: v for k, v in self.coarse.config().items() if k != "first_stage"}
        return {"first_stage": self.kind, **coarse, "prefilter": self.prefilter}


class IvfBinaryFirstStage(CascadeFirstStage):
    """Centroid inverted lists pick ``prefilter`` pages; binary MaxSim keeps the best ``n``."""

    kind = "ivf_binary"

    def __init__(
        self, dim: int, centroids: int = 4096, nprobe: int = 4, prefilter: int = 3000
    ) -> None:
        super().__init__(dim, 1, prefilter)
        self.coarse = IvfFirstStage(dim, centroids, nprobe)


FIRST_STAGES = {
    "binary": BinaryFirstStage,
    "mean": MeanFirstStage,
    "ann": AnnFirstStage,
    "cascade": CascadeFirstStage,
    "ivf": IvfFirstStage,
    "ivf_binary": IvfBinaryFirstStage,
}
FirstStage = BinaryFirstStage | MeanFirstStage | AnnFirstStage | CascadeFirstStage | IvfFirstStage


def build_first_stage(
    kind: str,
    dim: int,
    segments: int = 8,
    probe: int = 64,
    prefilter: int = 3000,
    centroids: int = 4096,
    nprobe: int = 4,
) -> FirstStage:
    if kind == "binary":
        return BinaryFirstStage(dim)
    if kind == "mean":
        return MeanFirstStage(dim, segments)
    if kind == "ann":
        return AnnFirstStage(dim, segments, probe)
    if kind == "cascade":
        return CascadeFirstStage(dim, segments, prefilter)
    if kind == "ivf":
        return IvfFirstStage(dim, centroids, nprobe)
    if kind == "ivf_binary":
        return IvfBinaryFirstStage(dim, centroids, nprobe, prefilter)
    raise ValueError(f"unknown first stage {kind!r}; choose one of {sorted(FIRST_STAGES)}")
