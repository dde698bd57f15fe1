"""Centroid inverted lists (the ``ivf`` first stage) and the compiled sign-bit MaxSim kernel.

Checked against brute force: the list scores equal a direct evaluation of the imputed
approximate MaxSim, before and after adds, deletes and compaction; the kernel equals MaxSim
over the unpacked +-1 vectors, and its fallback is that unpacking.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm_retriever.multivector import FlatMultiVectors, TwoStageIndex, maxsim_native
from mm_retriever.multivector.ivf import IvfFirstStage, Quantizer, kmeans
from mm_retriever.multivector.kernel import binary_maxsim, maxsim_scores
from mm_retriever.multivector.quantize import sign_bits, unpack_signs


def pages_around(n: int, seed: int = 0, tokens: int = 12, dim: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dim)).astype(np.float32)
    out = []
    for _ in range(n):
        m = centres[rng.integers(20, size=tokens)] + 0.3 * rng.standard_normal((tokens, dim))
        out.append((m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float16))
    return out


def brute_force_scores(stage: IvfFirstStage, query: np.ndarray, pages: list[np.ndarray]):
    """Per page (row order): sum over query vectors of the best probed-centre excess it holds."""
    quant = stage.quantizer
    sims = query @ quant.centroids.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, : stage.nprobe]
    top_sims = np.take_along_axis(sims, top, axis=1)
    excess = top_sims - top_sims.min(axis=1, keepdims=True)
    out = np.zeros(len(pages), np.float32)
    for r, page in enumerate(pages):
        held = set(quant.assign(page.astype(np.float32)).tolist())
        for i in range(query.shape[0]):
            out[r] += max([e for c, e in zip(top[i], excess[i], strict=True) if c in held] or [0])
    return out


def test_kmeans_finds_separated_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(16, dtype=np.float32)[:4] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((50, 16)) for c in centres])
    found = kmeans(x, 4)
    assert found.shape == (4, 16) and np.allclose(np.linalg.norm(found, axis=1), 1, atol=1e-5)
    assert sorted(np.argmax(found, axis=1).tolist()) == [0, 1, 2, 3]
    assert kmeans(x[:3], 8).shape == (8, 16)  # fewer vectors than centres: rows repeat


def test_quantizer_assigns_within_its_cell() -> None:
    x = np.concatenate(pages_around(100)).astype(np.float32)
    quant = Quantizer.train(x, 64)
    assert quant.n_centroids == 64 and quant.coarse.shape[0] == 8
    codes = quant.assign(x)
    cells = quant.assign_cells(x)
    assert codes.min() >= 0 and codes.max() < 64
    np.testing.assert_array_equal(codes // quant.fine.shape[1], cells)
    # every vector gets the nearest centre of its cell
    fine = quant.fine[cells]  # [n, F, D]
    best = np.einsum("nfd,nd->nf", fine, x).argmax(axis=1)
    agree = np.mean(codes % quant.fine.shape[1] == best)
    assert agree > 0.98, agree  # bfloat16 products may flip near ties


def test_untrained_stage_is_exact_then_trains() -> None:
    pages = pages_around(30)
    stage = IvfFirstStage(32, centroids=16, nprobe=2)  # trains at 16 * 16 = 256 vectors
    stage.add(pages[:10])  # 120 vectors: not trained, exact MaxSim over the kept vectors
    assert not stage.trained
    q = pages[3][:4].astype(np.float32)
    flat = FlatMultiVectors(32)
    flat.append(pages[:10])
    exact = maxsim_scores(q, flat.values, flat.offsets)
    assert stage.candidates(q, 3).tolist() == np.argsort(-exact, kind="stable")[:3].tolist()
    stage.delete(np.array([3]))
    assert 3 not in stage.candidates(q, 9).tolist() or len(stage) == 9
    stage.add(pages[10:30])
    assert stage.trained and len(stage) == 29
    assert stage.config() == {"first_stage": "ivf", "centroids": 16, "nprobe": 2}


def test_list_scores_equal_brute_force_through_adds_and_deletes() -> None:
    pages = pages_around(120)
    stage = IvfFirstStage(32, centroids=16, nprobe=3)
    stage.add(pages[:60])
    stage.add(pages[60:100])  # after training: the tail lists
    live = list(pages[:100])
    q = pages[7][:5].astype(np.float32)
    for step in range(3):
        got = stage.scores(q)[stage._ids]
        np.testing.assert_allclose(got, brute_force_scores(stage, q, live), atol=1e-5)
        if step == 0:  # delete a third: crosses the compaction threshold on the next query
            gone = np.arange(0, 100, 3)
            stage.delete(gone)
            live = [p for i, p in enumerate(live) if i % 3]
        elif step == 1:
            stage.add(pages[100:])
            live += pages[100:]
    assert stage._dead == 0  # compacted


def test_candidates_respect_allowed_rows_and_fill_short_lists() -> None:
    pages = pages_around(80)
    stage = IvfFirstStage(32, centroids=16, nprobe=1)
    stage.add(pages)
    q = pages[5][:3].astype(np.float32)
    allowed = np.arange(40, 50)
    got = stage.candidates(q, 4, allowed)
    assert len(got) == 4 and set(got.tolist()) <= set(allowed.tolist())
    everything = stage.candidates(q, 80)  # more than the probed lists hold: padded with the rest
    assert sorted(everything.tolist()) == list(range(80))


def test_two_stage_ivf_finds_and_forgets_pages() -> None:
    pages = pages_around(100)
    store = FlatMultiVectors(32)
    store.append(pages)
    two = TwoStageIndex(32, store.take, first_stage="ivf", centroids=16, nprobe=4, candidates=10)
    two.add([(f"d{i}", 0) for i in range(100)], pages)
    q = torch.from_numpy(pages[42].astype(np.float32))
    rows, _ = two.search(q, 1)
    assert rows.tolist() == [42]
    two.delete([("d42", 0)])
    store.delete(np.array([42]))
    rows, _ = two.search(q, 3)
    assert ("d42", 0) not in [two.keys[r] for r in rows] and len(rows) == 3


@pytest.mark.parametrize("tokens", [1, 7, 16, 20, 33])
def test_binary_kernel_equals_unpacked_maxsim(tokens: int) -> None:
    rng = np.random.default_rng(tokens)
    lengths = rng.integers(0, 9, size=40)
    bits = sign_bits(rng.standard_normal((int(lengths.sum()), 64)))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    q = rng.standard_normal((tokens, 64)).astype(np.float32)
    ref = maxsim_scores(q, unpack_signs(bits), offsets)
    np.testing.assert_allclose(binary_maxsim(q, bits, offsets), ref, rtol=2e-5, atol=5e-4)
    rows = np.array([5, 5, 0, 39, 17])
    np.testing.assert_allclose(binary_maxsim(q, bits, offsets, rows), ref[rows], atol=5e-4)
    if maxsim_native.load_binary() is None:
        pytest.skip(f"compiled kernel unavailable: {maxsim_native.unavailable_reason('binary')}")


def test_binary_kernel_falls_back_to_unpacking(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    bits = sign_bits(rng.standard_normal((30, 32)))
    offsets = np.array([0, 10, 30])
    q = rng.standard_normal((4, 32)).astype(np.float32)
    ref = maxsim_scores(q, unpack_signs(bits), offsets)
    monkeypatch.setattr(maxsim_native, "load_binary", lambda: None)
    np.testing.assert_allclose(binary_maxsim(q, bits, offsets), ref, atol=1e-5)


def test_untrained_stage_is_not_saved() -> None:
    stage = IvfFirstStage(32, centroids=64, nprobe=2)
    stage.add(pages_around(5))  # 60 vectors: far from the 1,024 that train it
    with pytest.raises(NotImplementedError, match="untrained"):
        stage.state()
