"""MaxSim: equal to colpali-engine's score_multi_vector; masks; the stored-page matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

from mm_retriever.multivector import scoring
from mm_retriever.multivector.scoring import MultiVectorMatrix, maxsim, pad_multivectors

score_multi_vector = BaseVisualRetrieverProcessor.score_multi_vector


def _unit(n: int, dim: int, g: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)


@pytest.fixture(scope="module")
def vecs() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Queries of 3..12 tokens and pages of 20..70 patches, 32-d, unit length (like ColPali)."""
    g = torch.Generator().manual_seed(7)
    queries = [_unit(n, 32, g) for n in (3, 12, 7, 5, 9)]
    docs = [_unit(n, 32, g) for n in (20, 70, 33, 41, 28, 64, 50)]
    return queries, docs


def test_maxsim_equals_score_multi_vector_on_lists(vecs):
    queries, docs = vecs
    ref = score_multi_vector(queries, docs, device="cpu")
    got = maxsim(queries, docs)
    assert got.shape == (5, 7) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_maxsim_equals_score_multi_vector_on_padded_tensors(vecs):
    queries, docs = vecs
    pq = torch.nn.utils.rnn.pad_sequence(queries, batch_first=True)
    pd = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)
    ref = score_multi_vector(pq, pd, device="cpu")
    torch.testing.assert_close(maxsim(pq, pd), ref, rtol=1e-5, atol=1e-5)
    # an explicit mask gives the same result as the inferred one
    mask = torch.zeros(pd.shape[:2], dtype=torch.bool)
    for i, d in enumerate(docs):
        mask[i, : len(d)] = True
    torch.testing.assert_close(maxsim(pq, pd, doc_mask=mask), ref, rtol=1e-5, atol=1e-5)
    # numpy arrays are accepted too
    got_np = maxsim([q.numpy() for q in queries], [d.numpy() for d in docs])
    torch.testing.assert_close(got_np, ref, rtol=1e-5, atol=1e-5)


def test_maxsim_batches_give_the_same_scores(vecs, monkeypatch):
    queries, docs = vecs
    full = maxsim(queries, docs)
    monkeypatch.setattr(scoring, "_STEP_BYTES", 1)  # one document per step
    torch.testing.assert_close(maxsim(queries, docs, batch_size=2), full)


def test_masked_rows_never_win_the_max():
    # every similarity is negative: a zero padding row would score 0 and win if not masked
    q = [torch.tensor([[1.0, 0.0]])]
    docs = [torch.tensor([[-1.0, 0.0], [-0.5, 0.0]]), torch.tensor([[-0.2, 0.0]])]
    got = maxsim(q, docs)
    torch.testing.assert_close(got, torch.tensor([[-0.5, -0.2]]))
    padded = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)
    mask = torch.tensor([[True, True], [True, False]])
    torch.testing.assert_close(maxsim(q, padded, doc_mask=mask), got)
    # colpali-engine's zero padding lets the pad win here (documented difference)
    assert score_multi_vector(q, docs, device="cpu")[0, 1].item() == 0.0


def test_padded_query_rows_add_nothing(vecs):
    queries, docs = vecs
    longer = [torch.cat([queries[0], torch.zeros(4, 32)])]
    torch.testing.assert_close(maxsim(longer, docs), maxsim(queries[:1], docs))


def test_pad_multivectors_and_errors():
    padded, mask = pad_multivectors([torch.ones(2, 4), torch.ones(5, 4)])
    assert padded.shape == (2, 5, 4)
    assert mask.sum(dim=1).tolist() == [2, 5]
    assert padded[0, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="different dims"):
        pad_multivectors([torch.ones(2, 4), torch.ones(2, 3)])
    with pytest.raises(ValueError, match="no multivectors"):
        pad_multivectors([])
    with pytest.raises(ValueError, match="query dim"):
        maxsim([torch.ones(2, 4)], [torch.ones(2, 3)])


def test_matrix_scores_all_pages_like_maxsim(vecs):
    queries, docs = vecs
    ref = maxsim(queries, docs)
    m32 = MultiVectorMatrix([d.numpy() for d in docs], dtype="float32")
    assert len(m32) == 7 and m32.dim == 32
    assert m32.lengths.tolist() == [len(d) for d in docs]
    torch.testing.assert_close(m32.score(queries), ref, rtol=1e-5, atol=1e-5)
    single = m32.score(queries[1])
    assert single.shape == (7,)
    torch.testing.assert_close(single, ref[1], rtol=1e-5, atol=1e-5)
    # float16 storage (the default), float32 math: close to the float32 scores
    m16 = MultiVectorMatrix(docs)
    assert m16.vectors.dtype == torch.float16
    torch.testing.assert_close(m16.score(queries), ref, rtol=0, atol=2e-2)


def test_matrix_scores_a_subset_of_rows(vecs, monkeypatch):
    queries, docs = vecs
    m = MultiVectorMatrix(docs, dtype="float32")
    rows = [5, 0, 3]
    ref = maxsim(queries, docs)[:, rows]
    torch.testing.assert_close(m.score(queries, rows=rows), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        m.score(queries[2], rows=np.array(rows)), ref[2], rtol=1e-5, atol=1e-5
    )
    monkeypatch.setattr(scoring, "_STEP_BYTES", 1)  # one stored row per step
    torch.testing.assert_close(m.score(queries, rows=rows), ref, rtol=1e-5, atol=1e-5)
    assert m.score(queries, rows=[]).shape == (5, 0)
