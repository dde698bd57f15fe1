"""Exact MaxSim over flat (values + offsets) pages: every backend against colpali-engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
from tiny_models import tiny_images, tiny_model_dir

from mm_retriever.multivector import maxsim_native
from mm_retriever.multivector.maxsim import amx_available, maxsim_flat, maxsim_flat_batch

score_multi_vector = BaseVisualRetrieverProcessor.score_multi_vector

# Page lengths around the kernel's 16- and 32-vector blocks, plus empty pages.
LENGTHS = [5, 0, 17, 1, 16, 0, 31, 32, 33, 64, 100, 15, 48, 0, 200]
# colpali-engine computes in the input dtype (bf16/fp16 similarities are rounded); ours
# accumulates in float32, so the tolerance is colpali's rounding.
TOL = {torch.bfloat16: 2e-2, torch.float16: 2e-3, torch.float32: 1e-4}


def _backends() -> list:
    amx = pytest.param(
        "amx",
        marks=pytest.mark.skipif(
            not amx_available(),
            reason=f"AMX kernel unavailable here: {maxsim_native.unavailable_reason('amx')}",
        ),
    )
    cpu = pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            maxsim_native.load_generic() is None,
            reason=f"no C compiler here: {maxsim_native.unavailable_reason('cpu')}",
        ),
    )
    return ["auto", "torch", amx, cpu]


def _flat(pages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([p.shape[0] for p in pages])
    return torch.cat(pages), torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])


def _pages(lengths, dim, dtype, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=gen).to(dtype) for n in lengths]


def _colpali(queries, pages) -> torch.Tensor:
    """score_multi_vector page by page length (so no zero padding enters a max); empty -> 0."""
    out = torch.zeros(len(queries), len(pages))
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(pages):
        by_len.setdefault(p.shape[0], []).append(i)
    for n, idx in by_len.items():
        if n:
            out[:, idx] = score_multi_vector(queries, [pages[i] for i in idx], device="cpu")
    return out


def _exact(queries, pages, *, absolute: bool = False) -> torch.Tensor:
    """float64 brute force on the same (rounded) inputs; ``absolute``: sum of |per-token max|
    instead (the scale of the rounding error of a sum computed in low precision)."""
    out = torch.zeros(len(queries), len(pages), dtype=torch.float64)
    for k, q in enumerate(queries):
        for i, p in enumerate(pages):
            if len(p):
                best = (q.double() @ p.double().T).amax(1)
                out[k, i] = (best.abs() if absolute else best).sum()
    return out


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_equals_colpali_engine(backend, dtype):
    pages = _pages(LENGTHS, 128, dtype)
    values, offsets = _flat(pages)
    gen = torch.Generator().manual_seed(1)
    queries = [torch.randn(n, 128, generator=gen).to(dtype) for n in (20, 1, 16, 17, 40)]
    if backend in ("amx", "cpu") and dtype == torch.float32:
        with pytest.raises(ValueError, match="bfloat16/float16"):
            maxsim_flat_batch(queries, values, offsets, backend=backend)
        return
    got = maxsim_flat_batch(queries, values, offsets, backend=backend)
    assert got.dtype == torch.float32 and got.shape == (len(queries), len(pages))
    ref = _colpali(queries, pages)
    scale = _exact(queries, pages, absolute=True).clamp(min=1.0)
    assert ((got - ref).abs() / scale).max() < TOL[dtype]
    # far tighter against the float64 truth: float32 accumulation of exact products
    exact = _exact(queries, pages)
    assert ((got.double() - exact).abs() / scale).max() < 1e-6
    assert (got[:, torch.tensor(LENGTHS) == 0] == 0).all()
    for k, q in enumerate(queries):
        torch.testing.assert_close(maxsim_flat(q, values, offsets, backend=backend), got[k])


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_float32_query_keeps_its_precision(backend, dtype):
    pages = _pages(LENGTHS, 64, dtype, seed=3)
    values, offsets = _flat(pages)
    query = torch.randn(20, 64, generator=torch.Generator().manual_seed(4))
    got = maxsim_flat(query, values, offsets, backend=backend)
    exact = _exact([query], pages)[0]
    scale = _exact([query], pages, absolute=True)[0].clamp(min=1.0)
    # a bf16-rounded query would be off by ~1e-3 of the scale
    assert ((got.double() - exact).abs() / scale).max() < 2e-5


@pytest.mark.parametrize("backend", _backends())
def test_rows_subset_order_and_duplicates(backend):
    pages = _pages(LENGTHS, 128, torch.bfloat16, seed=5)
    values, offsets = _flat(pages)
    queries = [torch.randn(9, 128).bfloat16(), torch.randn(33, 128).bfloat16()]
    full = maxsim_flat_batch(queries, values, offsets, backend=backend)
    rows = [14, 1, 3, 3, 0, 9]
    got = maxsim_flat_batch(queries, values, offsets, rows=np.array(rows), backend=backend)
    torch.testing.assert_close(got, full[:, rows])
    one = maxsim_flat(queries[0], values, offsets, rows=torch.tensor([8]), backend=backend)
    torch.testing.assert_close(one, full[0, [8]])
    empty = maxsim_flat(queries[0], values, offsets, rows=[], backend=backend)
    assert empty.shape == (0,)


@pytest.mark.parametrize("backend", _backends())
def test_many_pages_and_query_groups(backend):
    """More pages than one thread chunk and more query tokens than one pass of tiles."""
    lengths = torch.randint(0, 70, (300,), generator=torch.Generator().manual_seed(6)).tolist()
    pages = _pages(lengths, 128, torch.float16, seed=7)
    values, offsets = _flat(pages)
    gen = torch.Generator().manual_seed(8)  # seeded: not the session RNG
    queries = [torch.randn(n, 128, generator=gen).half() for n in (20, 70, 3, 40)]
    got = maxsim_flat_batch(queries, values, offsets, backend=backend)
    exact = _exact(queries, pages)
    scale = _exact(queries, pages, absolute=True).clamp(min=1.0)
    assert ((got.double() - exact).abs() / scale).max() < 1e-6


@pytest.mark.parametrize("backend", _backends())
def test_int8_codes_with_page_and_dim_scales(backend):
    """int8 pages (codes * dim_scale * page_scale) score as their dequantised float values."""
    gen = torch.Generator().manual_seed(12)
    codes = [torch.randint(-127, 128, (n, 128), generator=gen, dtype=torch.int8) for n in LENGTHS]
    values, offsets = _flat(codes)
    page_scale = torch.rand(len(LENGTHS), generator=gen) / 100
    dim_scale = torch.rand(128, generator=gen) + 0.5
    queries = [torch.randn(n, 128, generator=gen) for n in (20, 7)]
    got = maxsim_flat_batch(
        queries, values, offsets, page_scale=page_scale, dim_scale=dim_scale, backend=backend
    )
    pages = [c.double() * dim_scale.double() * s for c, s in zip(codes, page_scale, strict=True)]
    exact = _exact(queries, pages)
    scale = _exact(queries, pages, absolute=True).clamp(min=1.0)
    assert ((got.double() - exact).abs() / scale).max() < 1e-5
    one = maxsim_flat(queries[0], values, offsets, rows=[2], page_scale=page_scale, backend=backend)
    plain = maxsim_flat(queries[0], values, offsets, rows=[2], backend=backend)
    torch.testing.assert_close(one, plain * page_scale[2])
    with pytest.raises(ValueError, match="page_scale must be >= 0"):
        maxsim_flat(queries[0], values, offsets, page_scale=-page_scale, backend=backend)
    with pytest.raises(ValueError, match=r"dim_scale must be \[D=128\]"):
        maxsim_flat(queries[0], values, offsets, dim_scale=dim_scale[:5], backend=backend)


def test_matches_full_score_multi_vector_for_real_embeddings(tmp_path_factory):
    """Tiny real ColPali outputs stored flat in float16: equal to score_multi_vector on them."""
    from mm_retriever.encoders.colpali import ColPaliEncoder

    enc = ColPaliEncoder(str(tiny_model_dir("colpali", tmp_path_factory)), device="cpu")
    docs = [d.to(torch.float16) for d in enc.encode_document(tiny_images(4))]
    queries = [q.to(torch.float16) for q in enc.encode_query(["a chart of sales", "table"])]
    values, offsets = _flat(docs)
    got = maxsim_flat_batch(queries, values, offsets)
    ref = score_multi_vector([q.float() for q in queries], [d.float() for d in docs], device="cpu")
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["auto", "torch", "cpu"])
def test_any_dim(backend):
    """D not a multiple of 32 (the AMX tile width): the portable kernel and torch take it."""
    if backend == "cpu" and maxsim_native.load_generic() is None:
        pytest.skip(f"no C compiler here: {maxsim_native.unavailable_reason('cpu')}")
    pages = _pages(LENGTHS, 48, torch.float16, seed=14)
    values, offsets = _flat(pages)
    queries = [torch.randn(n, 48).half() for n in (5, 21)]
    got = maxsim_flat_batch(queries, values, offsets, backend=backend)
    exact = _exact(queries, pages)
    scale = _exact(queries, pages, absolute=True).clamp(min=1.0)
    assert ((got.double() - exact).abs() / scale).max() < 1e-6


def test_memmap_values(tmp_path):
    """Pages read straight from a memory-mapped file (bf16 bits stored as uint16)."""
    pages = _pages(LENGTHS, 128, torch.bfloat16, seed=8)
    values, offsets = _flat(pages)
    path = tmp_path / "values.u16"
    values.view(torch.uint16).numpy().tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r+", shape=tuple(values.shape))
    mapped = torch.from_numpy(mm).view(torch.bfloat16)  # a view of the mapping, no copy
    query = torch.randn(20, 128).bfloat16()
    torch.testing.assert_close(
        maxsim_flat(query, mapped, offsets.numpy()), maxsim_flat(query, values, offsets)
    )


def test_non_contiguous_values_fall_back_exactly():
    pages = _pages([3, 0, 40], 256, torch.bfloat16, seed=9)
    values, offsets = _flat(pages)
    strided = values[:, ::2]  # [T, 128], row stride 256: not what the AMX kernel reads
    query = torch.randn(5, 128).bfloat16()
    got = maxsim_flat(query, strided, offsets)
    exact = _exact([query], [p[:, ::2] for p in pages])[0]
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="row-contiguous"):
        maxsim_flat(query, strided, offsets, backend="amx")


def test_unavailable_kernel_falls_back_with_reason(monkeypatch):
    monkeypatch.setattr(maxsim_native, "_state", {})
    monkeypatch.setattr(maxsim_native, "cpu_flags", lambda: {"avx2"})
    assert maxsim_native.load() is None
    assert "CPU lacks" in maxsim_native.unavailable_reason("amx")
    pages = _pages([4, 20], 128, torch.bfloat16, seed=10)
    values, offsets = _flat(pages)
    query = torch.randn(6, 128).bfloat16()
    got = maxsim_flat(query, values, offsets)  # auto -> the portable kernel or torch
    torch.testing.assert_close(got.double(), _exact([query], pages)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match=r"AMX MaxSim kernel unavailable: .*CPU lacks"):
        maxsim_flat(query, values, offsets, backend="amx")


def test_no_compiler_falls_back_to_torch(monkeypatch, tmp_path):
    """A fresh machine without a C compiler: both kernels decline, the torch path answers."""
    monkeypatch.setenv("MM_RETRIEVER_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(maxsim_native, "_state", {})
    assert maxsim_native.load_generic() is None
    assert "no-such-cc" in maxsim_native.unavailable_reason("cpu")
    pages = _pages([4, 0, 20], 128, torch.bfloat16, seed=15)
    values, offsets = _flat(pages)
    query = torch.randn(6, 128).bfloat16()
    got = maxsim_flat(query, values, offsets)
    torch.testing.assert_close(got.double(), _exact([query], pages)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="cpu MaxSim kernel unavailable"):
        maxsim_flat(query, values, offsets, backend="cpu")


@pytest.mark.skipif(not amx_available(), reason="AMX kernel unavailable here")
def test_kernel_builds_into_a_fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MM_RETRIEVER_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(maxsim_native, "_state", {})
    assert maxsim_native.load() is not None
    assert maxsim_native.load_generic() is not None
    assert len(list(tmp_path.glob("maxsim_amx_*.so"))) == 1
    assert len(list(tmp_path.glob("maxsim_generic_*.so"))) == 1


def _score_in_child(conn, args) -> None:
    conn.send(maxsim_flat(*args).tolist())
    conn.close()


def test_works_in_a_forked_child():
    """The thread pool is per process: a fork after use must not hang."""
    import multiprocessing as mp

    pages = _pages([100] * 200, 128, torch.bfloat16, seed=13)
    values, offsets = _flat(pages)
    query = torch.randn(20, 128).bfloat16()
    parent = maxsim_flat(query, values, offsets)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_score_in_child, args=(send, (query, values, offsets)))
    proc.start()
    assert recv.poll(60), "child did not answer"
    child = torch.tensor(recv.recv())
    proc.join(10)
    torch.testing.assert_close(child, parent)


def test_backend_from_environment(monkeypatch):
    pages = _pages([4, 20], 128, torch.bfloat16, seed=11)
    values, offsets = _flat(pages)
    monkeypatch.setenv("MM_RETRIEVER_MAXSIM", "torch")
    maxsim_flat(torch.randn(3, 128).bfloat16(), values, offsets)
    monkeypatch.setenv("MM_RETRIEVER_MAXSIM", "gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        maxsim_flat(torch.randn(3, 128).bfloat16(), values, offsets)


def test_bad_inputs_are_named():
    values = torch.randn(10, 128).bfloat16()
    q = torch.randn(4, 128).bfloat16()
    with pytest.raises(ValueError, match="offsets must start at 0"):
        maxsim_flat(q, values, torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="end <= 10"):
        maxsim_flat(q, values, torch.tensor([0, 5, 11]))
    with pytest.raises(ValueError, match="non-decreasing"):
        maxsim_flat(q, values, torch.tensor([0, 6, 5, 10]))
    with pytest.raises(ValueError, match="query dim 64 != page dim 128"):
        maxsim_flat(torch.randn(4, 64), values, torch.tensor([0, 10]))
    with pytest.raises(IndexError, match=r"rows must lie in \[0, 1\)"):
        maxsim_flat(q, values, torch.tensor([0, 10]), rows=[1])
    with pytest.raises(TypeError, match=r"values dtype torch\.int32"):
        maxsim_flat(q, torch.zeros(10, 128, dtype=torch.int32), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="no queries"):
        maxsim_flat_batch([], values, torch.tensor([0, 10]))
