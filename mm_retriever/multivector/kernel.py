"""numpy glue around the one exact MaxSim kernel (``mm_retriever.multivector.maxsim``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_torch(x: Any) -> Any:
    """A torch view of a numpy array (copied only when read-only, e.g. an Arrow buffer)."""
    import torch

    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr)


def maxsim_scores(
    query: Any,
    values: Any,
    offsets: np.ndarray,
    rows: np.ndarray | None = None,
    page_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Exact MaxSim of ``query [Q, D]`` against flat pages (all, or ``rows``): float32 numpy.

    int8 ``values`` are codes, page ``i`` being ``values * page_scale[i]``.
    """
    from mm_retriever.multivector.maxsim import maxsim_flat

    r = None if rows is None else as_torch(np.asarray(rows, dtype=np.int64))
    scale = None if page_scale is None else as_torch(np.asarray(page_scale, np.float32))
    scores = maxsim_flat(as_torch(query), as_torch(values), as_torch(offsets), r, page_scale=scale)
    return scores.float().cpu().numpy()


def maxsim_scores_batch(
    queries: list[Any], values: Any, offsets: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Exact MaxSim ``[n_queries, N]`` of several queries in one pass over the pages."""
    from mm_retriever.multivector.maxsim import maxsim_flat_batch

    r = None if rows is None else as_torch(np.asarray(rows, dtype=np.int64))
    qs = [as_torch(q) for q in queries]
    return maxsim_flat_batch(qs, as_torch(values), as_torch(offsets), r).float().cpu().numpy()


def _sign_lut(q: np.ndarray, groups: int) -> np.ndarray:
    """``[W, 256, groups * 16]`` float32: per byte position and byte value, each query token's
    dot product with that byte's 8 dimensions as +-1 (np.packbits order, bit 7 first)."""
    tokens, dim = q.shape
    padded = np.zeros((groups * 16, dim), dtype=np.float32)
    padded[:tokens] = q
    patterns = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)
    patterns = 2.0 * patterns - 1.0  # [256, 8]
    by_byte = padded.reshape(groups * 16, dim // 8, 8)
    return np.ascontiguousarray(np.einsum("bk,twk->wbt", patterns, by_byte), dtype=np.float32)


def binary_maxsim(
    query: Any, bits: np.ndarray, offsets: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """MaxSim of a float ``query [Q, D]`` against pages of packed sign bits (``uint8 [T, D/8]``).

    Equal (up to float32 summation order) to ``maxsim_scores(query, unpack_signs(bits), ...)``;
    the compiled lookup-table kernel where it builds, else exactly that unpacking.
    """
    from mm_retriever.multivector import maxsim, maxsim_native
    from mm_retriever.multivector.quantize import unpack_signs

    q = np.asarray(query.float().cpu().numpy() if hasattr(query, "detach") else query)
    q = np.ascontiguousarray(q, dtype=np.float32)
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    order = np.arange(offs.size - 1) if rows is None else np.asarray(rows, dtype=np.int64)
    order = np.ascontiguousarray(order)
    lib = maxsim_native.load_binary()
    if lib is None or q.shape[0] == 0:
        return maxsim_scores(q, unpack_signs(bits), offs, order)
    groups = max(1, -(-q.shape[0] // 16))
    lut = _sign_lut(q, groups)
    out = np.empty(order.size, dtype=np.float32)
    width = bits.shape[1]

    def run(start: int, stop: int) -> int:
        return lib.mm_maxsim_binary(
            bits.ctypes.data, width, offs.ctypes.data, order.ctypes.data + 8 * start,
            stop - start, lut.ctypes.data, groups, q.shape[0], out.ctypes.data + 4 * start,
        )  # fmt: skip

    maxsim._run_chunks(run, order.size)
    return out
