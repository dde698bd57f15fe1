"""Exact MaxSim of queries against variable-length pages stored flat (values + offsets).

``score(q, page) = sum_i max_j <q_i, page_j>``; a page with no vectors scores 0. Pages are rows
of one flat ``values [T_total, D]`` matrix, page ``i`` being ``values[offsets[i]:offsets[i + 1]]``
(the layout Arrow list columns already have), so nothing is padded to the longest page.

Three exact backends, chosen per call (``backend=``) or by ``MM_RETRIEVER_MAXSIM``
(``auto`` default, ``amx``, ``cpu``, ``torch``):

- ``amx``: a fused C kernel on Intel AMX (:mod:`.maxsim_native`): 16 page vectors x
  16 query tokens per tile, running max kept in registers/L1, float32 accumulation of exact bf16
  products (float16 pages and float32 queries are split into bf16 hi + lo parts, int8 codes
  convert to bf16 exactly, so no input precision is lost). Pages are split over
  ``torch.get_num_threads()`` threads.
- ``cpu``: the same blocking in portable float32 SIMD C (any CPU: AMD, ARM), same threads.
- ``torch``: blocked float32 matmul + per-page max, a block of pages at a time so the similarity
  block stays small; runs anywhere torch does (any CPU, GPU tensors).

``auto`` uses ``amx`` for bfloat16/float16/int8 values when that kernel loads here, else ``cpu``
when a C compiler built it, else ``torch`` (also for float32 values, GPU tensors and
non-contiguous views). All agree with colpali-engine's ``score_multi_vector`` within float
tolerance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mm_retriever.multivector import maxsim_native

_VALUE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.int8)
_AMX_KINDS = {torch.bfloat16: 0, torch.float16: 1, torch.int8: 2}
BACKENDS = ("auto", "amx", "cpu", "torch")

Rows = torch.Tensor | np.ndarray | Sequence[int] | None

# float32 similarities one torch step may hold (kept cache-sized).
_TORCH_STEP_BYTES = 2 * 1024 * 1024
# Pages one AMX call scores (threads take calls in turn, so a loaded core does fewer).
_AMX_CHUNK_PAGES = 64

_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _check_inputs(
    queries: Sequence[torch.Tensor], values: torch.Tensor, offsets: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """Validate shapes/dtypes; return offsets as a CPU int64 tensor."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a torch tensor, got {type(values).__name__}")
    if values.ndim != 2:
        raise ValueError(f"values must be [T_total, D], got shape {tuple(values.shape)}")
    if values.dtype not in _VALUE_DTYPES:
        raise TypeError(
            f"values dtype {values.dtype} not supported (float16, bfloat16, float32, int8)"
        )
    if not queries:
        raise ValueError("no queries given")
    for q in queries:
        if not isinstance(q, torch.Tensor) or q.ndim != 2:
            raise ValueError("each query must be a [Q, D] torch tensor")
        if q.shape[1] != values.shape[1]:
            raise ValueError(f"query dim {q.shape[1]} != page dim {values.shape[1]}")
        if not q.dtype.is_floating_point:
            raise TypeError(f"query dtype {q.dtype} is not a float type")
    offs = torch.as_tensor(offsets).cpu()
    if offs.ndim != 1 or offs.numel() < 1 or offs.dtype.is_floating_point:
        raise ValueError("offsets must be a 1-d integer array of N + 1 entries")
    offs = offs.to(torch.int64).contiguous()
    if int(offs[0]) != 0 or int(offs[-1]) > values.shape[0] or bool((offs[1:] < offs[:-1]).any()):
        raise ValueError(
            f"offsets must start at 0, be non-decreasing and end <= {values.shape[0]} (T_total)"
        )
    return offs


def _check_rows(rows: Rows, n: int) -> torch.Tensor:
    if rows is None:
        return torch.arange(n, dtype=torch.int64)
    r = torch.as_tensor(rows).cpu()
    if r.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if r.dtype.is_floating_point or r.dtype == torch.bool:
        raise TypeError(f"rows must be integer page indices, got {r.dtype}")
    r = r.to(torch.int64).reshape(-1).contiguous()
    if r.numel() and (int(r.min()) < 0 or int(r.max()) >= n):
        raise IndexError(f"rows must lie in [0, {n}), got min {int(r.min())}, max {int(r.max())}")
    return r


def _resolve_backend(backend: str | None, values: torch.Tensor) -> str:
    name = (backend or os.environ.get("MM_RETRIEVER_MAXSIM") or "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"MaxSim backend must be one of {BACKENDS}, got {name!r}")
    if name == "torch":
        return name
    native_ok = (
        values.device.type == "cpu"
        and values.dtype in _AMX_KINDS
        and values.stride(1) == 1
        and values.stride(0) == values.shape[1]
    )
    amx_ok = native_ok and values.shape[1] % 32 == 0
    if name == "amx" and not amx_ok:
        raise ValueError(
            "the amx backend needs row-contiguous bfloat16/float16/int8 CPU values with D a "
            f"multiple of 32; got {values.dtype} {tuple(values.shape)} on {values.device}"
        )
    if name == "cpu" and not native_ok:
        raise ValueError(
            "the cpu backend needs row-contiguous bfloat16/float16/int8 CPU values; "
            f"got {values.dtype} {tuple(values.shape)} on {values.device}"
        )
    if name in ("auto", "amx") and amx_ok:
        if maxsim_native.load() is not None:
            return "amx"
        if name == "amx":
            raise RuntimeError(
                f"AMX MaxSim kernel unavailable: {maxsim_native.unavailable_reason('amx')}"
            )
    if native_ok:
        if maxsim_native.load_generic() is not None:
            return "cpu"
        if name == "cpu":
            raise RuntimeError(
                f"cpu MaxSim kernel unavailable: {maxsim_native.unavailable_reason('cpu')}"
            )
    return "torch"


def amx_available() -> bool:
    """Whether the compiled AMX kernel runs on this machine (builds it on first call)."""
    return maxsim_native.load() is not None


def _per_query_sums(best: torch.Tensor, q_split: list[int]) -> torch.Tensor:
    """``[n_queries, n_pages]`` sums of ``best [n_pages, sum Q]`` over each query's columns."""
    return torch.stack([part.sum(dim=1) for part in best.split(q_split, dim=1)])


def _maxsim_torch(
    q_all: torch.Tensor,
    q_split: list[int],
    values: torch.Tensor,
    offs: torch.Tensor,
    r: torch.Tensor,
) -> torch.Tensor:
    """Exact float32 MaxSim, a cache-sized block of pages at a time."""
    dev = values.device
    out = torch.zeros(len(q_split), r.numel(), dtype=torch.float32)
    q_t = q_all.to(dev).T.contiguous()
    starts, lengths = offs[r], offs[r + 1] - offs[r]
    step_tokens = max(1024, _TORCH_STEP_BYTES // (4 * q_all.shape[0]))
    cum = torch.cumsum(lengths, 0)
    i = 0
    while i < r.numel():
        base = int(cum[i - 1]) if i else 0
        j = max(i + 1, int(torch.searchsorted(cum, base + step_tokens, right=True)))
        lens, rr = lengths[i:j], r[i:j]
        total = int(lens.sum())
        if total:
            if bool((rr[1:] - rr[:-1] == 1).all()):  # consecutive pages: one slice, no copy
                blk = values[int(offs[rr[0]]) : int(offs[rr[-1] + 1])]
            else:
                first = torch.repeat_interleave(starts[i:j] - (cum[i:j] - lens - base), lens)
                blk = values[(first + torch.arange(total)).to(dev)]
            sims = blk.float() @ q_t  # [tokens, sum Q]
            n_l = int(lens[0])
            if bool((lens == n_l).all()):
                best = sims.view(j - i, n_l, -1).amax(dim=1)
            else:
                best = torch.segment_reduce(sims, "max", lengths=lens.to(dev), axis=0, unsafe=True)
                best = best.masked_fill((lens == 0).to(dev)[:, None], 0.0)
            out[:, i:j] = _per_query_sums(best, q_split).cpu()
        i = j
    return out


def _executor(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size != threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(threads, thread_name_prefix="maxsim"), threads
    return _pool


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: start a fresh pool there."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _pack_b(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[G*16, D] bf16 -> AMX B-tile (VNNI) layout [G, D/32, 16, 16, 2]."""
    return x.view(groups, 16, x.shape[1] // 32, 16, 2).permute(0, 2, 3, 1, 4).contiguous()


def _run_chunks(run, n: int) -> None:
    """``run(start, stop)`` over pages ``[0, n)`` on ``torch.get_num_threads()`` threads."""
    threads = max(1, torch.get_num_threads())
    if threads == 1 or n < 16:  # a rerank of a few pages: not worth a thread hand-off
        codes = [run(0, n)] if n else []
    else:
        chunk = max(8, min(_AMX_CHUNK_PAGES, math.ceil(n / threads)))
        bounds = [(s, min(n, s + chunk)) for s in range(0, n, chunk)]
        codes = list(_executor(threads).map(lambda b: run(*b), bounds))
    if any(codes):
        raise MemoryError("MaxSim kernel could not allocate its scratch memory")


def _kernel_buffers(
    q_all: torch.Tensor, q_split: list[int], groups: int, n_pages: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What both C kernels take: the query tokens zero-padded to ``groups`` of 16 (float32),
    each query's token offsets, and the ``[n_queries, n_pages]`` output."""
    padded = torch.zeros(groups * 16, q_all.shape[1], dtype=torch.float32)
    padded[: len(q_all)] = q_all
    qoff = torch.tensor([0, *np.cumsum(q_split)], dtype=torch.int64)
    return padded, qoff, torch.empty(len(q_split), n_pages, dtype=torch.float32)


def _maxsim_amx(
    q_all: torch.Tensor,
    q_split: list[int],
    values: torch.Tensor,
    offs: torch.Tensor,
    r: torch.Tensor,
) -> torch.Tensor:
    lib = maxsim_native.load()
    assert lib is not None
    dim = q_all.shape[1]
    groups = 2 * max(1, math.ceil(len(q_all) / 32))  # the kernel takes groups in pairs
    padded, qoff, out = _kernel_buffers(q_all, q_split, groups, r.numel())
    hi = padded.to(torch.bfloat16)
    lo = (padded - hi.float()).to(torch.bfloat16)
    use_lo = int(bool(lo.any()))
    b_hi, b_lo = _pack_b(hi, groups), _pack_b(lo, groups)
    n = r.numel()
    kind = _AMX_KINDS[values.dtype]

    def run(start: int, stop: int) -> int:
        return lib.mm_maxsim_amx(
            values.data_ptr(), kind, dim, offs.data_ptr(), r.data_ptr() + 8 * start,
            stop - start, b_hi.data_ptr(), b_lo.data_ptr(), groups, use_lo, qoff.data_ptr(),
            len(q_split), out.data_ptr() + 4 * start, n,
        )  # fmt: skip

    _run_chunks(run, n)
    return out


def _maxsim_cpu(
    q_all: torch.Tensor,
    q_split: list[int],
    values: torch.Tensor,
    offs: torch.Tensor,
    r: torch.Tensor,
) -> torch.Tensor:
    """The portable compiled float32 kernel (``_maxsim_generic.c``)."""
    lib = maxsim_native.load_generic()
    assert lib is not None
    dim = q_all.shape[1]
    groups = max(1, math.ceil(len(q_all) / 16))
    padded, qoff, out = _kernel_buffers(q_all, q_split, groups, r.numel())
    q_t = padded.view(groups, 16, dim).permute(2, 0, 1).contiguous()  # [D, G, 16]
    n = r.numel()
    kind = _AMX_KINDS[values.dtype]

    def run(start: int, stop: int) -> int:
        return lib.mm_maxsim_generic(
            values.data_ptr(), kind, dim, offs.data_ptr(), r.data_ptr() + 8 * start,
            stop - start, q_t.data_ptr(), groups, qoff.data_ptr(), len(q_split),
            out.data_ptr() + 4 * start, n,
        )  # fmt: skip

    _run_chunks(run, n)
    return out


def _check_scales(
    page_scale: torch.Tensor | np.ndarray | float | None,
    dim_scale: torch.Tensor | np.ndarray | None,
    n_pages: int,
    dim: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    ps = ds = None
    if page_scale is not None:
        ps = torch.as_tensor(page_scale, dtype=torch.float32).cpu().reshape(-1)
        if ps.numel() == 1:
            ps = ps.expand(n_pages)
        if ps.numel() != n_pages:
            raise ValueError(f"page_scale must be a scalar or [N={n_pages}], got {ps.numel()}")
        if bool((ps < 0).any()):
            raise ValueError("page_scale must be >= 0 (a negative scale would turn max into min)")
    if dim_scale is not None:
        ds = torch.as_tensor(dim_scale, dtype=torch.float32).cpu().reshape(-1)
        if ds.numel() != dim:
            raise ValueError(f"dim_scale must be [D={dim}], got {ds.numel()}")
    return ps, ds


def maxsim_flat_batch(
    queries: Sequence[torch.Tensor],
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: Rows = None,
    *,
    page_scale: torch.Tensor | np.ndarray | float | None = None,
    dim_scale: torch.Tensor | np.ndarray | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Exact MaxSim of several queries: float32 ``[n_queries, N]`` (``[n_queries, len(rows)]``).

    Arguments as :func:`maxsim_flat`; all queries are scored in one pass over the pages (each
    page is read once for the whole batch).
    """
    queries = list(queries)
    offs = _check_inputs(queries, values, offsets)
    r = _check_rows(rows, offs.numel() - 1)
    ps, ds = _check_scales(page_scale, dim_scale, offs.numel() - 1, values.shape[1])
    q_split = [q.shape[0] for q in queries]
    if r.numel() == 0 or sum(q_split) == 0:
        return torch.zeros(len(queries), r.numel(), dtype=torch.float32)
    q_all = torch.cat([q.detach().float().cpu() for q in queries])
    if ds is not None:  # <q, diag(s) v> = <q * s, v>
        q_all = q_all * ds
    run = {"amx": _maxsim_amx, "cpu": _maxsim_cpu, "torch": _maxsim_torch}
    out = run[_resolve_backend(backend, values)](q_all, q_split, values, offs, r)
    if ps is not None:  # max_j <q, s v_j> = s max_j <q, v_j> for s >= 0
        out *= ps[r]
    return out


def maxsim_flat(
    query: torch.Tensor,
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: Rows = None,
    *,
    page_scale: torch.Tensor | np.ndarray | float | None = None,
    dim_scale: torch.Tensor | np.ndarray | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Exact MaxSim of one query ``[Q, D]`` against pages stored flat.

    ``values [T_total, D]`` (float16/bfloat16/float32, or int8 codes; may be a view over a
    memmap or Arrow buffer), ``offsets`` int64 ``[N + 1]`` (page ``i`` is
    ``values[offsets[i]:offsets[i+1]]``), ``rows``: optional page indices to score, in that
    order. Returns float32 ``[N]`` (or ``[len(rows)]``); an empty page scores 0. Matches
    colpali-engine's ``score_multi_vector`` on the same tensors (it zero-pads a batch of pages,
    so a query token whose similarities to a shorter page are all negative gets 0 there; here the
    true max is kept, as in :mod:`.scoring`; real ColPali embeddings never differ).

    Quantised pages: page ``i``'s vectors are taken as ``values * dim_scale * page_scale[i]``
    (``page_scale``: scalar or ``[N]``, >= 0; ``dim_scale``: ``[D]``), e.g. int8 codes with one
    scale a page; the scales are applied exactly (outside the max / folded into the query).
    ``backend``: ``"auto"`` (default, or ``$MM_RETRIEVER_MAXSIM``), ``"amx"``, ``"cpu"``,
    ``"torch"``.
    """
    return maxsim_flat_batch(
        [query], values, offsets, rows, page_scale=page_scale, dim_scale=dim_scale, backend=backend
    )[0]


def maxsim_flat_reference(
    queries: Sequence[torch.Tensor],
    values: torch.Tensor,
    offsets: torch.Tensor | np.ndarray,
    rows: Rows = None,
) -> torch.Tensor:
    """The exact float32 torch path (runs anywhere): ``maxsim_flat_batch(..., backend="torch")``."""
    return maxsim_flat_batch(queries, values, offsets, rows, backend="torch")
