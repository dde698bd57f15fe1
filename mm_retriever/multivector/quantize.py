"""Multivector representations: token pooling, int8 storage and the compact first-stage codes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pool_tokens(mats: Sequence[np.ndarray], pool_factor: int) -> list[np.ndarray]:
    """colpali-engine's ``HierarchicalTokenPooler``: about ``n / pool_factor`` vectors a page.

    Ward clustering of each page's vectors; each cluster becomes its mean, L2-normalised.
    ``pool_factor`` 1 (or a page of one vector) returns the input unchanged.
    """
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
    if pool_factor == 1:
        return [np.asarray(m) for m in mats]
    import torch
    from colpali_engine.compression.token_pooling import HierarchicalTokenPooler

    pooler = HierarchicalTokenPooler()
    out: list[np.ndarray] = []
    for m in mats:
        arr = np.asarray(m)
        if arr.shape[0] <= 1:
            out.append(arr)
            continue
        pooled = pooler.pool_embeddings(
            [torch.from_numpy(arr.astype(np.float32))], pool_factor=pool_factor
        )
        out.append(pooled[0].numpy().astype(arr.dtype, copy=False))
    return out


def quantize_int8(mat: np.ndarray) -> tuple[np.ndarray, float]:
    """Symmetric int8 codes of a page and its one scale: ``mat ~= codes * scale``."""
    arr = np.asarray(mat, dtype=np.float32)
    peak = float(np.abs(arr).max()) if arr.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    return np.clip(np.rint(arr / scale), -127, 127).astype(np.int8), scale


def sign_bits(values: np.ndarray) -> np.ndarray:
    """Packed sign bits ``uint8 [T, D / 8]`` (bit set where the component is > 0)."""
    return np.packbits(np.asarray(values) > 0, axis=-1)


_SIGN_TABLES: dict[str, object] = {}


def unpack_signs(bits: np.ndarray, dtype: str = "float16") -> np.ndarray:
    """``[T, D]`` +-1 vectors from packed sign bits (``D = 8 * bits.shape[1]``); exact in f16.

    One table lookup a byte (a 256 x 8 table of +-1 patterns), the fastest unpacking in torch here.
    """
    import torch

    table = _SIGN_TABLES.get(dtype)
    if table is None:
        pattern = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
        table = torch.from_numpy(pattern).to(getattr(torch, dtype)).mul_(2).sub_(1)
        _SIGN_TABLES[dtype] = table
    codes = torch.from_numpy(np.ascontiguousarray(bits)).long()
    return torch.nn.functional.embedding(codes, table).reshape(bits.shape[0], -1).numpy()


def segment_means(mat: np.ndarray, parts: int) -> np.ndarray:
    """``[min(parts, n), D]`` L2-normalised means of ``parts`` contiguous runs of a page's vectors.

    For image patches (row-major) a run is a horizontal band of the page; for text tokens a
    passage. ``parts`` 1 is plain mean pooling.
    """
    arr = np.asarray(mat, dtype=np.float32)
    n = arr.shape[0]
    if n == 0:
        return np.zeros((0, arr.shape[1]), dtype=np.float32)
    k = max(1, min(parts, n))
    bounds = np.linspace(0, n, k + 1).astype(np.int64)
    means = np.add.reduceat(arr, bounds[:-1], axis=0) / np.diff(bounds)[:, None]
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return means / np.where(norms > 0, norms, 1.0)
