"""Two-stage index: a compact first stage in RAM picks ``candidates`` pages, MaxSim reranks.

The rerank reads the candidates' stored vectors by row (``fetch``: for the page leg, a
``take`` of those offsets from the Lance table), so RAM holds only the first stage. With
``rerank="residual"`` the index keeps every page as PLAID residual codes instead
(``multivector.residual``: a centre id plus ``rerank_bits`` bits a dimension, saved with the
first stage and memory-mapped when reopened) and reranks by MaxSim over the decoded codes, so
a query reads no float vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from mm_retriever.multivector.base import Key, KeyedIndex, KeyedRows, top_k
from mm_retriever.multivector.first_stage import build_first_stage
from mm_retriever.multivector.kernel import maxsim_scores
from mm_retriever.multivector.residual import ResidualVectors

#: How candidates are reranked: the stored float vectors, or the index's residual codes.
RERANKS = ("exact", "residual")

#: ``fetch(rows) -> (values [T, D], offsets [len(rows) + 1])``: the rows' exact vectors, in order.
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class TwoStageIndex(KeyedIndex):
    """A compact first stage (``FIRST_STAGES``) picks candidates; exact MaxSim reranks them."""

    kind = "two_stage"

    def __init__(
        self,
        dim: int,
        fetch: Fetch,
        *,
        first_stage: str = "mean",
        segments: int = 8,
        candidates: int = 300,
        probe: int = 64,
        prefilter: int = 3000,
        centroids: int = 4096,
        nprobe: int = 4,
        rerank: str = "exact",
        rerank_bits: int = 2,
        rerank_centroids: int = 65536,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if rerank not in RERANKS:
            raise ValueError(f"rerank must be one of {RERANKS}, got {rerank!r}")
        self.dim = dim
        self.fetch = fetch
        self.candidates = candidates
        self.first = build_first_stage(
            first_stage, dim, segments, probe, prefilter, centroids, nprobe
        )
        self._rows = KeyedRows()
        self.codes = (
            ResidualVectors(dim, rerank_centroids, rerank_bits) if rerank == "residual" else None
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the first stage and keys (the residual codes: ``codes_nbytes``)."""
        return self.first.nbytes + self._rows.nbytes

    @property
    def codes_nbytes(self) -> int:
        """Bytes of the residual codes (memory-mapped from the saved state once reopened)."""
        return 0 if self.codes is None else self.codes.nbytes

    def add(self, keys: Sequence[Key], multivectors: Sequence[np.ndarray]) -> None:
        if len(keys) != len(multivectors):
            raise ValueError(f"{len(keys)} keys for {len(multivectors)} multivectors")
        self._rows.append(keys)
        self.first.add(multivectors)
        if self.codes is not None:
            self.codes.add(multivectors)

    def delete(self, keys: Iterable[Key]) -> None:
        rows = self._rows.rows_of(keys)
        if rows.size:
            self.first.delete(rows)
            self._rows.remove_rows(rows)
            if self.codes is not None:
                self.codes.delete(rows)

    def candidates_for(self, query: Any, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        """Rows of the first stage's best ``candidates`` pages (among ``allowed_rows``)."""
        return self.first.candidates(query, self.candidates, allowed_rows)

    def search(
        self, query: Any, k: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(self) == 0 or (allowed_rows is not None and allowed_rows.size == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        exact = getattr(getattr(self.first, "coarse", self.first), "exact_search", None)
        found = exact(query, k, allowed_rows) if exact is not None else None
        if found is not None:  # an untrained ivf stage holds the vectors: its scores are exact
            return found
        cands = self.candidates_for(query, allowed_rows)
        fetch_order = np.sort(cands)  # ascending rows read faster
        values, offsets = (self.codes.take if self.codes is not None else self.fetch)(fetch_order)
        exact = maxsim_scores(query, values, offsets)
        best = top_k(exact, k)
        return fetch_order[best], exact[best]

    def config(self) -> dict[str, Any]:
        extra = {} if self.codes is None else self.codes.config()
        return {"index": self.kind, "candidates": self.candidates, **self.first.config(), **extra}

    def state(self) -> dict[str, np.ndarray]:
        """The keys and the first stage as arrays (``restore`` reads them back).

        Raises ``NotImplementedError`` for a first stage that is rebuilt instead (``ann``).
        """
        first = {f"first.{k}": v for k, v in self.first.state().items()}
        docs = [d for d, _ in self.keys]
        names, doc_index = np.unique(np.asarray(docs, dtype=object), return_inverse=True)
        return {
            "doc_names": np.asarray(names.tolist(), dtype=str),
            "doc_index": doc_index.astype(np.int32),
            "page_index": np.asarray([p for _, p in self.keys], dtype=np.int32),
            **first,
            **(
                {}
                if self.codes is None
                else {f"rerank.{k}": v for k, v in self.codes.state().items()}
            ),
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Load ``state()`` arrays into this (empty, same-config) index."""
        names = arrays["doc_names"].tolist()
        docs = [names[i] for i in arrays["doc_index"].tolist()]
        self._rows = KeyedRows()
        self._rows.append(list(zip(docs, arrays["page_index"].tolist(), strict=True)))
        prefix = "first."
        self.first.restore({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
        if self.codes is not None:
            prefix = "rerank."
            self.codes.restore(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
        if len(self.first) != len(self._rows) or (
            self.codes is not None and len(self.codes) != len(self._rows)
        ):
            raise ValueError("saved first stage and keys disagree")
