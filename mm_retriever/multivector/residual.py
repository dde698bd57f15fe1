"""PLAID-style residual codes: a page vector as a centre id plus ``bits`` bits a dimension.

ColBERTv2 / PLAID compression. Vectors are assigned to k-means centres (the two-level
``Quantizer`` of the ivf first stage); the residual ``v - centre`` is bucketed per dimension into
``2 ** bits`` levels (cut at the residuals' quantiles, each level decoding to the median of its
bucket). A 128-d vector costs 2 bytes of centre id (up to 65,536 centres) plus ``16 * bits``
bytes: 34 bytes at 2 bits, against 256 for float16. Decoding is ``centre + level values``,
L2-normalised; MaxSim over decoded vectors reranks candidates without the float vectors.

``ResidualVectors`` holds pages' codes flat (like ``FlatMultiVectors``). Until it has seen
``TRAIN_PER_CENTROID x centroids`` vectors it keeps them as float16 (exact, as the untrained ivf
stage does), then trains the codec on them and codes everything from there on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.ivf import TRAIN_PER_CENTROID, Quantizer

BITS = (1, 2, 4, 8)
_CHUNK = 1 << 16


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ResidualCodec:
    """Centres + per-dimension residual levels; ``encode`` / ``decode`` of ``[T, D]`` vectors."""

    def __init__(
        self, quantizer: Quantizer, cutoffs: np.ndarray, levels: np.ndarray, bits: int
    ) -> None:
        if bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
        self.quantizer = quantizer
        self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)  # [D, 2^b - 1]
        self.levels = np.ascontiguousarray(levels, dtype=np.float32)  # [D, 2^b]
        self.bits = int(bits)
        self.dim = int(self.levels.shape[0])
        if self.dim % (8 // self.bits):
            raise ValueError(f"dim {self.dim} is not a multiple of {8 // self.bits}")
        self._table: Any = None
        self._cents: Any = None

    @property
    def id_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.quantizer.n_centroids <= 1 << 16 else np.int32)

    @property
    def code_width(self) -> int:
        """Bytes of packed residual levels a vector."""
        return self.dim * self.bits // 8

    @property
    def bytes_per_vector(self) -> int:
        return self.id_dtype.itemsize + self.code_width

    @property
    def nbytes(self) -> int:
        q = self.quantizer
        return int(q.coarse.nbytes + q.fine.nbytes + self.cutoffs.nbytes + self.levels.nbytes)

    @classmethod
    def train(
        cls, sample: np.ndarray, n_centroids: int, bits: int = 2, seed: int = 0
    ) -> ResidualCodec:
        """Centres by spherical k-means on ``sample``; levels from its residuals' quantiles."""
        x = _unit(np.asarray(sample, dtype=np.float32))
        quantizer = Quantizer.train(x, n_centroids, seed=seed)
        res = x - quantizer.centroids[quantizer.assign(x)]
        n = 1 << bits
        cutoffs = np.quantile(res, np.arange(1, n) / n, axis=0).T
        levels = np.quantile(res, (np.arange(n) + 0.5) / n, axis=0).T
        return cls(quantizer, cutoffs, levels, bits)

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [T], packed levels uint8 [T, code_width])`` of the rows of ``values``."""
        x = _unit(np.asarray(values, dtype=np.float32))
        ids = self.quantizer.assign(x)
        packed = np.empty((x.shape[0], self.code_width), dtype=np.uint8)
        per_byte = 8 // self.bits
        shifts = (self.bits * np.arange(per_byte - 1, -1, -1)).astype(np.uint8)
        for s in range(0, x.shape[0], _CHUNK):
            res = x[s : s + _CHUNK] - self.quantizer.centroids[ids[s : s + _CHUNK]]
            codes = np.zeros(res.shape, dtype=np.uint8)
            for j in range(self.cutoffs.shape[1]):
                codes += res > self.cutoffs[:, j]
            codes = codes.reshape(res.shape[0], -1, per_byte) << shifts
            packed[s : s + res.shape[0]] = np.bitwise_or.reduce(codes, axis=2)
        return ids.astype(self.id_dtype), packed

    def _lookup(self) -> tuple[Any, Any]:
        """Per byte position and byte value, the decoded levels of its dimensions (torch)."""
        import torch

        if self._table is None:
            per_byte = 8 // self.bits
            byte = np.arange(256, dtype=np.int64)
            shifts = self.bits * np.arange(per_byte - 1, -1, -1)
            codes = (byte[:, None] >> shifts) & ((1 << self.bits) - 1)  # [256, per_byte]
            lv = self.levels.reshape(-1, per_byte, 1 << self.bits)  # [P, per_byte, 2^b]
            table = lv[:, np.arange(per_byte)[None, :], codes]  # [P, 256, per_byte]
            self._table = torch.from_numpy(
                np.ascontiguousarray(table.reshape(-1, per_byte), dtype=np.float32)
            )
            self._cents = torch.from_numpy(np.ascontiguousarray(self.quantizer.centroids))
        return self._table, self._cents

    def decode(self, ids: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """float16 ``[T, D]`` unit vectors: centre plus decoded residual, normalised."""
        import torch

        table, cents = self._lookup()
        ids_t = torch.from_numpy(np.asarray(ids).astype(np.int64, copy=False).reshape(-1))
        pk = torch.from_numpy(np.ascontiguousarray(packed)).long()
        pk += torch.arange(pk.shape[1], dtype=torch.int64) * 256
        out = torch.nn.functional.embedding(pk, table).reshape(pk.shape[0], self.dim)
        out += torch.nn.functional.embedding(ids_t, cents)
        out = torch.nn.functional.normalize(out, dim=1)
        return out.to(torch.float16).numpy()

    def state(self) -> dict[str, np.ndarray]:
        return {
            "coarse": self.quantizer.coarse,
            "fine": self.quantizer.fine,
            "cutoffs": self.cutoffs,
            "levels": self.levels,
            "bits": np.asarray([self.bits], dtype=np.int64),
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> ResidualCodec:
        quantizer = Quantizer(np.asarray(arrays["coarse"]), np.asarray(arrays["fine"]))
        return cls(quantizer, arrays["cutoffs"], arrays["levels"], int(arrays["bits"][0]))


class ResidualVectors:
    """Pages' vectors as residual codes, flat in row order; float16 until the codec is trained."""

    def __init__(self, dim: int, centroids: int = 65536, bits: int = 2, seed: int = 0) -> None:
        if bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
        if dim % (8 // bits):
            raise ValueError(f"dim {dim} is not a multiple of {8 // bits}")
        self.dim = int(dim)
        self.n_centroids = int(centroids)
        self.bits = int(bits)
        self.seed = seed
        self.codec: ResidualCodec | None = None
        self._pending: FlatMultiVectors | None = FlatMultiVectors(dim, "float16")
        self._ids: FlatMultiVectors | None = None
        self._codes: FlatMultiVectors | None = None

    def __len__(self) -> int:
        store = self._pending if self._pending is not None else self._codes
        return len(store) if store is not None else 0

    @property
    def trained(self) -> bool:
        return self.codec is not None

    @property
    def nbytes(self) -> int:
        """Bytes of the vectors as held (codes, or float16 while untrained) and the codec."""
        if self._pending is not None:
            return self._pending.nbytes
        assert self._ids is not None and self._codes is not None and self.codec is not None
        return self._ids.nbytes + self._codes.nbytes - 8 * (len(self._ids) + 1) + self.codec.nbytes

    def add(self, multivectors: Sequence[np.ndarray]) -> None:
        mats = [np.asarray(m, dtype=np.float32).reshape(-1, self.dim) for m in multivectors]
        if self._pending is not None:
            self._pending.append([m.astype(np.float16) for m in mats])
            if self._pending.values.shape[0] >= TRAIN_PER_CENTROID * self.n_centroids:
                self._train()
            return
        self._append_coded(mats)

    def _train(self) -> None:
        assert self._pending is not None
        values = self._pending.values
        cap = TRAIN_PER_CENTROID * self.n_centroids
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(values.shape[0], min(cap, values.shape[0]), replace=False)
        self.codec = ResidualCodec.train(
            values[np.sort(pick)], self.n_centroids, self.bits, self.seed
        )
        pending, self._pending = self._pending, None
        self._ids = FlatMultiVectors(1, self.codec.id_dtype)
        self._codes = FlatMultiVectors(self.codec.code_width, "uint8")
        lengths = pending.lengths()
        for start in range(0, len(pending), 4096):  # bounded memory while coding
            rows = np.arange(start, min(start + 4096, len(pending)))
            vals, _ = pending.take(rows)
            ids, codes = self.codec.encode(vals)
            self._ids.append_flat(ids.reshape(-1, 1), lengths[rows])
            self._codes.append_flat(codes, lengths[rows])

    def _append_coded(self, mats: list[np.ndarray]) -> None:
        assert self.codec is not None and self._ids is not None and self._codes is not None
        if not mats:
            return
        lengths = np.asarray([m.shape[0] for m in mats], dtype=np.int64)
        ids, codes = self.codec.encode(np.concatenate(mats))
        self._ids.append_flat(ids.reshape(-1, 1), lengths)
        self._codes.append_flat(codes, lengths)

    def delete(self, rows: np.ndarray) -> None:
        for store in (self._pending, self._ids, self._codes):
            if store is not None:
                store.delete(rows)

    def take(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(float16 values, offsets)`` of ``rows`` in that order: decoded codes (or exact)."""
        if self._pending is not None:
            return self._pending.take(rows)
        assert self.codec is not None and self._ids is not None and self._codes is not None
        ids, offsets = self._ids.take(rows)
        codes, _ = self._codes.take(rows)
        return self.codec.decode(ids, codes), offsets

    def state(self) -> dict[str, np.ndarray]:
        if self._pending is not None:
            return self._pending.state("pending.")
        assert self.codec is not None and self._ids is not None and self._codes is not None
        codec = {f"codec.{k}": v for k, v in self.codec.state().items()}
        return {**codec, **self._ids.state("ids."), "codes": self._codes.values}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        if "pending.values" in arrays:
            self.codec, self._ids, self._codes = None, None, None
            self._pending = FlatMultiVectors.restore(arrays, "pending.")
            return
        prefix = "codec."
        self.codec = ResidualCodec.from_state(
            {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        )
        self._pending = None
        self._ids = FlatMultiVectors.restore(arrays, "ids.")
        self._codes = FlatMultiVectors.restore(
            {"c.values": arrays["codes"], "c.offsets": arrays["ids.offsets"]}, "c."
        )

    def config(self) -> dict[str, Any]:
        return {
            "rerank": "residual",
            "rerank_bits": self.bits,
            "rerank_centroids": self.n_centroids,
        }
