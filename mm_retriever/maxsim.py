"""Exact MaxSim of queries against variable-length pages stored flat (values + offsets).

``score(q, page) = sum_i max_j <q_i, page_j>``; a page with no vectors scores 0. Pages are
rows of one flat ``values [T_total, D]`` matrix, page ``i`` being
``values[offsets[i]:offsets[i + 1]]`` (the layout Arrow list columns already have), so nothing is
padded to the longest page.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# Page vectors one reference step scores at once.
_REF_STEP_TOKENS = 1 << 16


def _check_inputs(
    queries: Sequence[torch.Tensor], values: torch.Tensor, offsets: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Validate shapes/dtypes; return offsets as a CPU int64 tensor."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a torch tensor, got {type(values).__name__}")
    if values.ndim != 2:
        raise ValueError(f"values must be [T_total, D], got shape {tuple(values.shape)}")
    if values.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"values dtype {values.dtype} not supported (float16, bfloat16, float32)")
    for q in queries:
        if not isinstance(q, torch.Tensor) or q.ndim != 2:
            raise ValueError("each query must be a [Q, D] torch tensor")
        if q.shape[1] != values.shape[1]:
            raise ValueError(f"query dim {q.shape[1]} != page dim {values.shape[1]}")
        if not q.dtype.is_floating_point:
            raise TypeError(f"query dtype {q.dtype} is not a float type")
    offs = torch.as_tensor(offsets)
    if offs.ndim != 1 or offs.numel() < 1:
        raise ValueError("offsets must be a 1-d int64 array of N + 1 entries")
    offs = offs.to(torch.int64)
    if int(offs[0]) != 0 or int(offs[-1]) > values.shape[0] or bool((offs[1:] < offs[:-1]).any()):
        raise ValueError(
            f"offsets must start at 0, be non-decreasing and end <= {values.shape[0]} (T_total)"
        )
    return offs


def _check_rows(rows: torch.Tensor | np.ndarray | Sequence[int] | None, n: int) -> torch.Tensor:
    if rows is None:
        return torch.arange(n, dtype=torch.int64)
    r = torch.as_tensor(rows).to(torch.int64).reshape(-1)
    if r.numel() and (int(r.min()) < 0 or int(r.max()) >= n):
        raise IndexError(f"rows must lie in [0, {n}), got min {int(r.min())}, max {int(r.max())}")
    return r


def maxsim_flat_reference(
    queries: Sequence[torch.Tensor],
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> torch.Tensor:
    """Plain float32 MaxSim ``[n_queries, len(rows)]``: the exact fallback and test oracle."""
    offs = _check_inputs(queries, values, offsets)
    r = _check_rows(rows, offs.numel() - 1)
    out = torch.zeros(len(queries), r.numel(), dtype=torch.float32)
    if r.numel() == 0 or not queries:
        return out
    starts, ends = offs[r], offs[r + 1]
    lengths = ends - starts
    q_all = torch.cat([q.float() for q in queries])  # [sum Q, D]
    q_split = [q.shape[0] for q in queries]
    i = 0
    while i < r.numel():
        # Pages [i, j) with about _REF_STEP_TOKENS vectors (at least one page).
        cum = torch.cumsum(lengths[i:], 0)
        j = i + max(1, int(torch.searchsorted(cum, _REF_STEP_TOKENS, right=True)))
        lens = lengths[i:j]
        total = int(lens.sum())
        if total:
            idx = torch.repeat_interleave(starts[i:j], lens) + (
                torch.arange(total) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
            )
            sims = values[idx].float() @ q_all.T  # [tokens, sum Q]
            seg = torch.repeat_interleave(torch.arange(j - i), lens)
            best = torch.zeros(j - i, q_all.shape[0]).scatter_reduce_(
                0, seg[:, None].expand_as(sims), sims, "amax", include_self=False
            )
            for k, part in enumerate(best.split(q_split, dim=1)):
                out[k, i:j] = part.sum(dim=1)
        i = j
    return out


def maxsim_flat(
    query: torch.Tensor,
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> torch.Tensor:
    """Exact MaxSim of one query ``[Q, D]`` against pages stored flat.

    ``values [T_total, D]`` (float16/bfloat16/float32; may be a view over a memmap or Arrow
    buffer), ``offsets`` int64 ``[N + 1]`` (page ``i`` is ``values[offsets[i]:offsets[i+1]]``),
    ``rows``: optional page indices to score, in that order. Returns float32 ``[N]`` (or
    ``[len(rows)]``); an empty page scores 0. Matches colpali-engine's ``score_multi_vector``.
    """
    return maxsim_flat_batch([query], values, offsets, rows)[0]


def maxsim_flat_batch(
    queries: Sequence[torch.Tensor],
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> torch.Tensor:
    """Exact MaxSim of several queries: float32 ``[n_queries, N]`` (``[n_queries, len(rows)]``)."""
    return maxsim_flat_reference(list(queries), values, offsets, rows)
