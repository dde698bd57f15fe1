"""PLAID-style residual codes: codec round trip, the code store, residual rerank, the page leg."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
from test_multivector import (  # noqa: F401  (pdfs: a fixture)
    clustered_pages,
    keys_for,
    leg_scores,
    make_index,
    pdfs,
)
from tiny_models import tiny_colpali  # noqa: F401  (session fixture)

from mm_retriever.index import MultimodalIndex
from mm_retriever.multivector import ExactIndex, TwoStageIndex
from mm_retriever.multivector.residual import ResidualCodec, ResidualVectors
from mm_retriever.protocols import Query

score_multi_vector = BaseVisualRetrieverProcessor.score_multi_vector


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_codec_round_trip_sizes_and_more_bits_closer() -> None:
    pages, _ = clustered_pages(200)
    x = np.concatenate(pages).astype(np.float32)
    train, test = x[:2000], x[2000:]
    mean_cos = {}
    for bits in (1, 2, 4):
        codec = ResidualCodec.train(train, 64, bits=bits)
        ids, packed = codec.encode(test)
        assert ids.dtype == np.uint16 and ids.shape == (test.shape[0],)
        assert packed.dtype == np.uint8 and packed.shape == (test.shape[0], 64 * bits // 8)
        assert codec.bytes_per_vector == 2 + 64 * bits // 8
        decoded = codec.decode(ids, packed)
        assert decoded.dtype == np.float16
        np.testing.assert_allclose(np.linalg.norm(decoded.astype(np.float32), axis=1), 1, atol=2e-3)
        mean_cos[bits] = float(_cosines(decoded, test).mean())
        # decoding a vector's own centre alone is worse than centre + residual
        centre_only = codec.quantizer.centroids[ids.astype(np.int64)]
        assert mean_cos[bits] > float(_cosines(centre_only, test).mean())
    assert mean_cos[1] < mean_cos[2] < mean_cos[4]
    assert mean_cos[4] > 0.97


def test_codec_rejects_bad_bits() -> None:
    with pytest.raises(ValueError, match="bits"):
        ResidualVectors(64, bits=3)
    with pytest.raises(ValueError, match="multiple"):
        ResidualVectors(6, bits=2)


def test_store_is_exact_until_trained_then_coded() -> None:
    pages, _ = clustered_pages(60)  # 24 vectors a page
    store = ResidualVectors(64, centroids=16, bits=2)  # trains at 16 x 16 = 256 vectors
    store.add(pages[:10])
    assert not store.trained
    values, offsets = store.take([3, 1])
    np.testing.assert_array_equal(values, np.concatenate([pages[3], pages[1]]))
    store.add(pages[10:])
    assert store.trained and len(store) == 60
    values, offsets = store.take([59, 0])
    assert offsets.tolist() == [0, 24, 48]
    assert _cosines(values, np.concatenate([pages[59], pages[0]])).mean() > 0.85
    # codes: 2 bytes of centre id + 16 bytes of levels a vector, the page offsets, the codec
    assert store.nbytes - store.codec.nbytes == 60 * 24 * 18 + 8 * 61
    second = store.take([1])[0]
    store.delete(np.array([0, 5]))
    assert len(store) == 58
    np.testing.assert_array_equal(store.take([0])[0], second)  # rows moved up
    again = ResidualVectors(64, centroids=16, bits=2)
    again.restore(store.state())
    for row in (0, 30, 57):
        np.testing.assert_array_equal(again.take([row])[0], store.take([row])[0])


@pytest.mark.parametrize("first_stage", ["binary", "mean"])
def test_residual_rerank_scores_close_to_exact_and_recall(first_stage) -> None:
    pages, queries = clustered_pages(400)
    exact = ExactIndex(64)
    exact.add(keys_for(400), pages)

    def no_fetch(_rows):
        raise AssertionError("a residual rerank reads no stored float vectors")

    # this corpus is mostly isotropic noise (the hard case for residual codes): 4 bits here
    two = TwoStageIndex(
        64, no_fetch, first_stage=first_stage, candidates=60, rerank="residual",
        rerank_bits=4, rerank_centroids=32,
    )  # fmt: skip
    two.add(keys_for(400), pages)
    assert two.codes.trained and two.codes_nbytes > 0
    assert two.config()["rerank"] == "residual" and two.config()["rerank_bits"] == 4
    hits = 0
    for q in queries:
        qt = torch.from_numpy(q)
        rows, scores = two.search(qt, 10)
        truth, _ = exact.search(qt, 10)
        hits += len(set(rows.tolist()) & set(truth.tolist()))
        exact_of_found = exact.score(qt, rows)
        assert np.abs(scores - exact_of_found).max() < 0.05 * q.shape[0]
    assert hits / (10 * len(queries)) >= 0.8


def test_two_stage_rejects_unknown_rerank() -> None:
    with pytest.raises(ValueError, match="rerank"):
        TwoStageIndex(64, lambda r: r, rerank="pq")


def test_residual_state_round_trip(tmp_path) -> None:
    from mm_retriever.multivector.persist import load_state, save_state

    pages, queries = clustered_pages(300)
    opts = {"first_stage": "ivf", "centroids": 16, "nprobe": 2, "candidates": 30,
            "rerank": "residual", "rerank_centroids": 16}  # fmt: skip
    two = TwoStageIndex(64, None, **opts)
    two.add(keys_for(300), pages)
    save_state(tmp_path, 3, two.config(), two.state())
    _, arrays = load_state(tmp_path, 3, two.config())
    assert isinstance(arrays["rerank.codes"], np.memmap)  # on disk, read as queries touch it
    again = TwoStageIndex(64, None, **opts)
    again.restore(arrays)
    for q in queries[:5]:
        a, b = two.search(torch.from_numpy(q), 10), again.search(torch.from_numpy(q), 10)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_array_equal(a[1], b[1])
    again.delete(keys_for(4))
    extra, _ = clustered_pages(2, seed=4)
    again.add(keys_for(2, start=700), extra)
    assert len(again) == len(again.codes) == 298


def test_page_leg_residual_rerank_round_trip_and_reopen(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    options = {"index": "two_stage", "first_stage": "ivf", "centroids": 4, "candidates": 5,
               "rerank": "residual", "rerank_bits": 4}  # fmt: skip
    index = make_index(tmp_path / "index", tiny_colpali, options)
    assert not index.add([pdfs[0]]).failed
    leg = index.legs["page"]
    got = leg_scores(index, "rainfall")
    mv = leg._mv
    assert mv.codes.trained  # 5 pages of the tiny model pass 16 x 4 vectors

    # scores close to exact float MaxSim over the stored vectors
    keys, mats = leg.stored_vectors(index.store)
    q = leg.encode_query(Query("rainfall"))
    exact = score_multi_vector([q.float()], [torch.from_numpy(m).float() for m in mats])[0]
    expected = dict(zip(keys, exact.tolist(), strict=True))
    assert len(got) == 5
    for key, score in got.items():
        assert score == pytest.approx(expected[key], rel=0.05, abs=0.05 * q.shape[0])

    # the manifest keeps the option; the next process loads the saved codes, no rebuild
    other = MultimodalIndex.open(index.uri)
    assert other.legs["page"].config() == leg.config()
    assert other.legs["page"].config()["rerank"] == "residual"

    def no_full_read(*_a, **_k):
        raise AssertionError("the saved state should have been loaded, not rebuilt")

    other.legs["page"]._build = no_full_read
    assert leg_scores(other, "rainfall") == pytest.approx(got, rel=1e-5)
    assert other.legs["page"]._mv.codes.trained


def test_page_leg_rejects_residual_without_two_stage(tiny_colpali) -> None:  # noqa: F811
    from mm_retriever.legs.page import PageImageRetriever

    spec = {"name": "colpali", "options": {"model": tiny_colpali}}
    with pytest.raises(ValueError, match="two_stage"):
        PageImageRetriever(spec, index="exact", rerank="residual")
    with pytest.raises(ValueError, match="rerank must be"):
        PageImageRetriever(spec, rerank="pq")
