"""Centroid inverted lists: a first stage whose cost grows with the candidates, not the corpus.

PLAID / ColBERTv2-style candidate generation. Page vectors are assigned to ``centroids``
k-means centres (spherical, trained on the first ``16 x centroids`` vectors the index sees);
each centre keeps the list of pages that have a vector assigned to it. A query vector probes its
``nprobe`` most similar centres; a page's approximate MaxSim is, per query vector, the best
similarity among the probed centres it holds, or the ``nprobe``-th similarity when it holds none
(the "missing similarity imputation" of XTR / ColBERTv2). Only pages on a probed list are touched.

Until enough vectors arrive to train the centres, the stage keeps the pages' vectors (float16)
and ranks them by exact MaxSim, so small corpora lose nothing.

RAM: the centres, one int32 page id per (page, centre) pair (a page's distinct centres), and
two int64 row <-> id maps. Deletes only mark ids dead (lists are filtered at query time and
compacted once a quarter of the ids are dead); adds append to a small tail of lists that is merged
into the main lists when it grows past an eighth of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from mm_retriever.multivector.base import top_k
from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.kernel import maxsim_scores

log = logging.getLogger(__name__)

#: Vectors a centre needs before training (and the most sampled per centre when training).
TRAIN_PER_CENTROID = 16
_ASSIGN_CHUNK = 1 << 16


def _as_numpy(query: Any) -> np.ndarray:
    q = query.float().cpu().numpy() if hasattr(query, "detach") else np.asarray(query)
    return np.ascontiguousarray(q, dtype=np.float32)


def _nearest(x: Any, cents: Any) -> Any:
    """Index of the most similar row of ``cents`` for each row of ``x`` (bfloat16 products)."""
    return (x @ cents.T).max(dim=1).indices  # max(): several times faster than argmax() here


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def kmeans(x: np.ndarray, k: int, iters: int = 8, seed: int = 0) -> np.ndarray:
    """Spherical k-means: ``k`` unit centres (float32) of the rows of ``x``.

    Starts from ``k`` distinct random rows (fewer when ``x`` is short: rows repeat so that ``k``
    centres come back); an emptied centre restarts at a random row.
    """
    import torch

    rng = np.random.default_rng(seed)
    x = _unit(np.asarray(x, dtype=np.float32))
    if x.shape[0] == 0:
        raise ValueError("k-means needs at least one vector")
    pick = rng.choice(x.shape[0], min(k, x.shape[0]), replace=False)
    cents = x[np.resize(pick, k)].copy()
    xb = torch.from_numpy(x).to(torch.bfloat16)
    for _ in range(iters if x.shape[0] > k else 0):
        codes = _nearest(xb, torch.from_numpy(cents).to(torch.bfloat16)).numpy()
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=k)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        new = np.zeros_like(cents)
        filled = counts > 0
        new[filled] = np.add.reduceat(x[order], starts[filled], axis=0)
        empty = np.flatnonzero(~filled)
        new[empty] = x[rng.choice(x.shape[0], empty.size, replace=x.shape[0] < empty.size)]
        cents = _unit(new)
    return cents.astype(np.float32)


class Quantizer:
    """Two-level centres: ``coarse`` cells, each split into ``fine`` centres (``coarse * fine``).

    Assigning a vector costs ``coarse + fine`` dot products instead of ``coarse * fine`` (64 + 64
    instead of 4,096), which is what makes listing 10^8 vectors affordable on a CPU.
    """

    def __init__(self, coarse: np.ndarray, fine: np.ndarray) -> None:
        self.coarse = coarse  # [C, D]
        self.fine = fine  # [C, F, D]
        self.centroids = fine.reshape(-1, fine.shape[-1])  # [C * F, D]; id = cell * F + j

    @classmethod
    def train(cls, sample: np.ndarray, n_centroids: int, seed: int = 0) -> Quantizer:
        n_coarse = 1 << max(0, int(np.ceil(np.log2(max(n_centroids, 1)) / 2)))
        n_fine = max(1, -(-n_centroids // n_coarse))
        coarse = kmeans(sample, n_coarse, seed=seed)
        cells = Quantizer(coarse, coarse[:, None, :]).assign_cells(sample)
        fine = np.stack(
            [
                kmeans(
                    sample[cells == c] if (cells == c).any() else coarse[c : c + 1],
                    n_fine,
                    seed=seed + 1 + c,
                )
                for c in range(n_coarse)
            ]
        )
        return cls(coarse, fine)

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    def assign_cells(self, values: np.ndarray) -> np.ndarray:
        import torch

        cents = torch.from_numpy(self.coarse).to(torch.bfloat16)
        out = np.empty(values.shape[0], dtype=np.int64)
        for start in range(0, values.shape[0], _ASSIGN_CHUNK):
            part = np.ascontiguousarray(values[start : start + _ASSIGN_CHUNK])
            out[start : start + part.shape[0]] = _nearest(
                torch.from_numpy(part).to(torch.bfloat16), cents
            ).numpy()
        return out

    def assign(self, values: np.ndarray) -> np.ndarray:
        """Centre id of every row of ``values``: its cell, then the nearest centre in it (int64)."""
        import torch

        values = np.asarray(values)
        cells = self.assign_cells(values)
        n_fine = self.fine.shape[1]
        codes = cells * n_fine
        order = np.argsort(cells, kind="stable")
        bounds = np.searchsorted(cells[order], np.arange(self.coarse.shape[0] + 1))
        for c in np.flatnonzero(np.diff(bounds)):
            idx = order[bounds[c] : bounds[c + 1]]
            block = torch.from_numpy(np.ascontiguousarray(values[idx])).to(torch.bfloat16)
            fine = torch.from_numpy(self.fine[c]).to(torch.bfloat16)
            codes[idx] += _nearest(block, fine).numpy()
        return codes


class _Lists:
    """Centre -> page ids, as CSR (``offsets [K + 1]``, ``ids``) built from (centre, id) pairs."""

    def __init__(self, k: int, codes: np.ndarray, ids: np.ndarray) -> None:
        order = np.argsort(codes, kind="stable")
        self.ids = ids[order].astype(np.int32)
        counts = np.bincount(codes, minlength=k)
        self.offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])

    @classmethod
    def from_csr(cls, offsets: np.ndarray, ids: np.ndarray) -> _Lists:
        lists = cls.__new__(cls)
        lists.offsets, lists.ids = offsets, ids
        return lists

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.offsets.nbytes)

    def gather(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, lengths)``: the lists of ``centres`` concatenated, and each one's length."""
        starts, stops = self.offsets[centres], self.offsets[centres + 1]
        parts = [self.ids[s:e] for s, e in zip(starts.tolist(), stops.tolist(), strict=True)]
        return np.concatenate(parts) if parts else self.ids[:0], stops - starts

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        codes = np.repeat(np.arange(self.offsets.size - 1, dtype=np.int32), np.diff(self.offsets))
        return codes, self.ids


class IvfFirstStage:
    """Candidates from centroid inverted lists with missing-similarity imputation."""

    kind = "ivf"

    def __init__(self, dim: int, centroids: int = 4096, nprobe: int = 4, seed: int = 0) -> None:
        if centroids < 1 or nprobe < 1:
            raise ValueError(f"centroids and nprobe must be >= 1, got {centroids}, {nprobe}")
        self.dim = dim
        self.n_centroids = int(centroids)
        self.nprobe = int(nprobe)
        self.seed = seed
        self.quantizer: Quantizer | None = None  # once trained
        self._pending: FlatMultiVectors | None = FlatMultiVectors(dim, "float16")
        self._ids = np.zeros(0, dtype=np.int64)  # page id of each row
        self._row_of_id = np.zeros(0, dtype=np.int64)  # row of each id (-1: deleted)
        self._main: _Lists | None = None
        self._tail: list[tuple[np.ndarray, np.ndarray]] = []  # (centres, ids) added since
        self._tail_lists: _Lists | None = None
        self._dead = 0
        self._lock = threading.Lock()  # guards the lazy merge of the tail

    def __len__(self) -> int:
        return int(self._ids.size)

    @property
    def trained(self) -> bool:
        return self.quantizer is not None

    @property
    def nbytes(self) -> int:
        lists = sum(part.nbytes for part in (self._main, self._tail_lists) if part is not None)
        tail = sum(c.nbytes + i.nbytes for c, i in self._tail)
        q = self.quantizer
        cents = 0 if q is None else q.centroids.nbytes + q.coarse.nbytes
        pending = 0 if self._pending is None else self._pending.nbytes
        return int(cents + lists + tail + pending + self._ids.nbytes + self._row_of_id.nbytes)

    # ------------------------------------------------------------------ writing
    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        if not multivectors:
            return
        first = self._row_of_id.size
        ids = np.arange(first, first + len(multivectors), dtype=np.int64)
        rows = np.arange(self._ids.size, self._ids.size + len(multivectors), dtype=np.int64)
        self._ids = np.concatenate([self._ids, ids])
        self._row_of_id = np.concatenate([self._row_of_id, rows])
        if self._pending is not None:
            self._pending.append([np.asarray(m, dtype=np.float16) for m in multivectors])
            if self._pending.values.shape[0] >= TRAIN_PER_CENTROID * self.n_centroids:
                self._train()
            return
        self._add_pairs(ids, multivectors)

    def _add_pairs(self, ids: np.ndarray, multivectors: Sequence[np.ndarray]) -> None:
        lengths = np.asarray([m.shape[0] for m in multivectors], dtype=np.int64)
        if not lengths.sum():
            return
        values = np.concatenate([np.asarray(m) for m in multivectors])
        assert self.quantizer is not None
        codes = self.quantizer.assign(values)
        owner = np.repeat(ids, lengths)
        pairs = np.unique(owner * self.n_centroids + codes)  # a page's distinct centres
        self._tail.append(
            (
                (pairs % self.n_centroids).astype(np.int32),
                (pairs // self.n_centroids).astype(np.int32),
            )
        )
        self._tail_lists = None

    def _train(self) -> None:
        """Train the centres on the pending vectors, then list every pending page."""
        pending = self._pending
        assert pending is not None
        values = pending.values
        want = TRAIN_PER_CENTROID * self.n_centroids
        rng = np.random.default_rng(self.seed)
        sample = (
            values
            if values.shape[0] <= want
            else values[rng.choice(values.shape[0], want, replace=False)]
        )
        log.info(
            "training %d centres on %d page vectors (once; later pages are only assigned)",
            self.n_centroids,
            sample.shape[0],
        )
        self.quantizer = Quantizer.train(sample, self.n_centroids, seed=self.seed)
        self.n_centroids = self.quantizer.n_centroids
        self._pending = None
        o, values = pending.offsets, pending.values
        mats = [values[o[i] : o[i + 1]] for i in range(len(pending))]
        self._add_pairs(self._ids.copy(), mats)

    def delete(self, rows: np.ndarray) -> None:
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            return
        if self._pending is not None:
            self._pending.delete(rows)
        gone = self._ids[rows]
        self._ids = np.delete(self._ids, rows)
        self._row_of_id[gone] = -1
        self._row_of_id[self._ids] = np.arange(self._ids.size)
        self._dead += int(rows.size)

    def _merge_tail(self) -> None:
        """Fold the tail's (centre, page) pairs into the main lists (caller holds the lock)."""
        parts = [*self._tail, *([self._main.pairs()] if self._main else [])]
        empty = np.zeros(0, np.int32)
        codes, ids = zip(*parts, strict=True) if parts else ((empty,), (empty,))
        self._main = _Lists(self.n_centroids, np.concatenate(codes), np.concatenate(ids))
        self._tail, self._tail_lists = [], None

    def _lists(self) -> list[_Lists]:
        """The main lists and the tail's, merging or compacting first where due."""
        with self._lock:
            tail_pairs = sum(c.size for c, _ in self._tail)
            main_pairs = 0 if self._main is None else self._main.ids.size
            compact = self._dead > 0.25 * max(self._row_of_id.size, 1)
            if self._tail and (compact or tail_pairs > main_pairs / 8):
                self._merge_tail()
            if compact and self._main is not None:
                codes, ids = self._main.pairs()
                alive = self._row_of_id[ids] >= 0
                self._main = _Lists(self.n_centroids, codes[alive], ids[alive])
                self._dead = 0
            if self._tail and self._tail_lists is None:
                codes, ids = zip(*self._tail, strict=True)
                self._tail_lists = _Lists(
                    self.n_centroids, np.concatenate(codes), np.concatenate(ids)
                )
            return [part for part in (self._main, self._tail_lists) if part is not None]

    # ------------------------------------------------------------------ saving
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that ``restore`` turns back into this stage (the tail merged into the lists)."""
        if self._pending is not None:  # it holds every vector: the table is the same read
            raise NotImplementedError("an untrained ivf stage is rebuilt, not saved")
        out = {"ids": self._ids, "row_of_id": self._row_of_id}
        with self._lock:
            self._merge_tail()
        quant = self.quantizer
        assert quant is not None
        return {
            **out,
            "coarse": quant.coarse,
            "fine": quant.fine,
            "list_ids": self._main.ids,
            "list_offsets": self._main.offsets,
            "dead": np.asarray([self._dead], dtype=np.int64),
        }

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._ids = np.asarray(arrays["ids"])
        self._row_of_id = np.asarray(arrays["row_of_id"])
        self._tail, self._tail_lists = [], None
        self._pending = None
        self.quantizer = Quantizer(np.asarray(arrays["coarse"]), np.asarray(arrays["fine"]))
        self.n_centroids = self.quantizer.n_centroids
        self._main = _Lists.from_csr(arrays["list_offsets"], arrays["list_ids"])
        self._dead = int(arrays["dead"][0])

    # ------------------------------------------------------------------ searching
    def scores(self, query: Any) -> np.ndarray:
        """Approximate MaxSim excess over the imputed floor for every page id (float32).

        0 for a page on no probed list; the page's approximate MaxSim is this plus the sum of
        the query vectors' ``nprobe``-th similarities (the same for every page).
        """
        assert self.quantizer is not None
        q = _as_numpy(query)
        sims = q @ self.quantizer.centroids.T  # [Q, K]
        probe = min(self.nprobe, sims.shape[1])
        top = np.argpartition(-sims, probe - 1, axis=1)[:, :probe]
        top_sims = np.take_along_axis(sims, top, axis=1)
        excess = top_sims - top_sims.min(axis=1, keepdims=True)
        lists = self._lists()
        total = np.zeros(self._row_of_id.size, dtype=np.float32)
        best = np.zeros_like(total)
        for i in range(q.shape[0]):
            order = np.argsort(excess[i])  # ascending: a page's best centre is written last
            parts, values = [], []
            for lst in lists:
                ids, lengths = lst.gather(top[i][order])
                parts.append(ids)
                values.append(np.repeat(excess[i][order], lengths))
            ids = np.concatenate(parts)
            if len(lists) > 1:  # the tail's pairs must not overwrite a better main pair
                by = np.argsort(np.concatenate(values), kind="stable")
                ids, vals = ids[by], np.concatenate(values)[by]
            else:
                vals = values[0]
            best[ids] = vals
            total[ids] += best[ids]  # fancy +=: a repeated id is added once
            best[ids] = 0.0
        return total

    def exact_search(
        self, query: Any, n: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Before training: ``(rows, exact MaxSim)`` of the best ``n`` kept pages; after: None."""
        p = self._pending
        if p is None:
            return None
        scores = maxsim_scores(query, p.values, p.offsets, allowed_rows)
        best = top_k(scores, n)
        rows = best if allowed_rows is None else np.asarray(allowed_rows, dtype=np.int64)[best]
        return rows, scores[best]

    def candidates(self, query: Any, n: int, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        exact = self.exact_search(query, n, allowed_rows)  # not trained yet: exact MaxSim
        if exact is not None:
            return exact[0]
        total = self.scores(query)
        if allowed_rows is not None:
            allowed_rows = np.asarray(allowed_rows, dtype=np.int64)
            return allowed_rows[top_k(total[self._ids[allowed_rows]], n)]
        touched = np.flatnonzero(total)
        rows = self._row_of_id[touched]
        alive = rows >= 0
        touched, rows = touched[alive], rows[alive]
        if rows.size >= n:
            return rows[top_k(total[touched], n)]
        rest = np.setdiff1d(np.arange(len(self)), rows)[: n - rows.size]  # all tie at the floor
        return np.concatenate([rows[top_k(total[touched], rows.size)], rest])

    def config(self) -> dict[str, Any]:
        return {"first_stage": self.kind, "centroids": self.n_centroids, "nprobe": self.nprobe}
