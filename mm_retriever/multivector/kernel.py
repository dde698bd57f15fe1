"""numpy glue around the one exact MaxSim kernel (``mm_retriever.maxsim``)."""

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
    from mm_retriever.maxsim import maxsim_flat

    r = None if rows is None else as_torch(np.asarray(rows, dtype=np.int64))
    scale = None if page_scale is None else as_torch(np.asarray(page_scale, np.float32))
    scores = maxsim_flat(as_torch(query), as_torch(values), as_torch(offsets), r, page_scale=scale)
    return scores.float().cpu().numpy()


def maxsim_scores_batch(
    queries: list[Any], values: Any, offsets: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """Exact MaxSim ``[n_queries, N]`` of several queries in one pass over the pages."""
    from mm_retriever.maxsim import maxsim_flat_batch

    r = None if rows is None else as_torch(np.asarray(rows, dtype=np.int64))
    qs = [as_torch(q) for q in queries]
    return maxsim_flat_batch(qs, as_torch(values), as_torch(offsets), r).float().cpu().numpy()
