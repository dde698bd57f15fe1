"""Multivector indexes: flat storage, exact and two-stage search, representations on a real index.

Exactness is checked against colpali-engine's ``score_multi_vector``; two-stage recall against
exact MaxSim on a clustered synthetic corpus (the threshold fails if the first stage is poor).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest
import torch
from colpali_engine.compression.token_pooling import HierarchicalTokenPooler
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
from pdfgen import make_mixed_pdf, make_sample_pdf
from s3_helpers import moto_s3
from tiny_models import tiny_colpali  # noqa: F401  (session fixture)

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex
from mm_retriever.multivector import (
    ExactIndex,
    FlatMultiVectors,
    MultiVectorIndex,
    TwoStageIndex,
    pool_tokens,
    quantize_int8,
    segment_means,
    sign_bits,
    unpack_signs,
)
from mm_retriever.protocols import Query

score_multi_vector = BaseVisualRetrieverProcessor.score_multi_vector


# ------------------------------------------------------------------ synthetic pages
def clustered_pages(
    n_pages: int, dim: int = 64, tokens: int = 24, topics: int = 40, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pages drawn around topic centres (with near-duplicates), and queries from pages' tokens."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, 8, dim)).astype(np.float32)
    pages = []
    for i in range(n_pages):
        if i and rng.random() < 0.2:  # a near-duplicate of an earlier page
            base = pages[rng.integers(i)].astype(np.float32)
            page = base + 0.05 * rng.standard_normal(base.shape)
        else:
            topic = centres[rng.integers(topics)]
            page = topic[rng.integers(8, size=tokens)] + 0.6 * rng.standard_normal((tokens, dim))
        pages.append(page / np.linalg.norm(page, axis=1, keepdims=True))
    queries = []
    for _ in range(20):
        src = pages[rng.integers(n_pages)]
        q = src[rng.choice(src.shape[0], 6, replace=False)] + 0.3 * rng.standard_normal((6, dim))
        queries.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
    return [p.astype(np.float16) for p in pages], queries


def keys_for(n: int, start: int = 0) -> list[tuple[str, int]]:
    return [(f"doc{i // 10}", i % 10) for i in range(start, start + n)]


def in_memory_two_stage(pages, **options) -> tuple[TwoStageIndex, FlatMultiVectors]:
    store = FlatMultiVectors(pages[0].shape[1])
    store.append(pages)
    index = TwoStageIndex(pages[0].shape[1], store.take, **options)
    index.add(keys_for(len(pages)), pages)
    return index, store


# ------------------------------------------------------------------ units
def test_flat_store_appends_deletes_and_takes() -> None:
    rng = np.random.default_rng(1)
    mats = [rng.standard_normal((n, 8)).astype(np.float16) for n in (3, 0, 5, 2, 7)]
    flat = FlatMultiVectors(8)
    flat.append(mats[:2])
    flat.append(mats[2:])
    assert len(flat) == 5 and flat.offsets.tolist() == [0, 3, 3, 8, 10, 17]
    values, offsets = flat.take([3, 0])
    assert offsets.tolist() == [0, 2, 5]
    np.testing.assert_array_equal(values, np.concatenate([mats[3], mats[0]]))
    flat.delete(np.array([0, 2]))
    assert len(flat) == 3 and flat.lengths().tolist() == [0, 2, 7]
    np.testing.assert_array_equal(flat.row(2), mats[4])
    with pytest.raises(ValueError, match=r"\[n, 8\]"):
        flat.append([np.zeros((2, 4), np.float16)])


def test_codes_round_trip() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((11, 64)).astype(np.float32)
    signs = unpack_signs(sign_bits(x))
    np.testing.assert_array_equal(signs, np.where(x > 0, 1.0, -1.0))
    codes, scale = quantize_int8(x)
    assert codes.dtype == np.int8 and np.abs(codes.astype(np.float32) * scale - x).max() <= scale
    means = segment_means(x, 3)
    assert means.shape == (3, 64) and np.allclose(np.linalg.norm(means, axis=1), 1.0)
    assert segment_means(x[:2], 4).shape == (2, 64)


def test_pool_tokens_is_colpali_engines_pooler() -> None:
    rng = np.random.default_rng(3)
    mats = [rng.standard_normal((n, 32)).astype(np.float32) for n in (12, 30)]
    ours = pool_tokens(mats, 3)
    ref = HierarchicalTokenPooler().pool_embeddings(
        [torch.from_numpy(m) for m in mats], pool_factor=3
    )
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6)
    assert [a.shape[0] for a in ours] == [4, 10]
    with pytest.raises(ValueError, match="pool_factor"):
        pool_tokens(mats, 0)


@pytest.mark.parametrize("first_stage", ["mean", "binary", "cascade", "ann", "ivf", "ivf_binary"])
def test_indexes_equal_score_multi_vector(first_stage: str) -> None:
    pages, queries = clustered_pages(60, tokens=10)
    exact = ExactIndex(64)
    exact.add(keys_for(60), pages)
    # with candidates >= pages the two-stage result is the exact one
    wide = {"probe": 512} if first_stage == "ann" else {}  # the graph must reach every page
    if first_stage.startswith("ivf"):  # 8 centres train on the first 128 vectors
        wide = {"centroids": 8, "nprobe": 2}
    two, _ = in_memory_two_stage(pages, first_stage=first_stage, candidates=60, **wide)
    assert isinstance(exact, MultiVectorIndex) and isinstance(two, MultiVectorIndex)
    ref = score_multi_vector(
        [torch.from_numpy(q) for q in queries], [torch.from_numpy(p).float() for p in pages]
    )
    for qi, q in enumerate(queries):
        for index in (exact, two):
            rows, scores = index.search(torch.from_numpy(q), 10)
            expect = ref[qi].numpy()
            assert rows.tolist() == np.argsort(-expect, kind="stable")[:10].tolist()
            np.testing.assert_allclose(scores, expect[rows], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("first_stage", "options", "threshold"),
    [
        ("binary", {}, 0.95),
        ("mean", {"segments": 8}, 0.93),
        ("cascade", {"segments": 8, "prefilter": 1000}, 0.95),
        ("ann", {"segments": 8, "probe": 64}, 0.75),  # measured 0.785: weaker, see README
        # measured 0.96 (nprobe 4: 0.85, so the bar fails a weak probe) and 0.995
        ("ivf", {"centroids": 1024, "nprobe": 16}, 0.93),
        ("ivf_binary", {"centroids": 1024, "nprobe": 8, "prefilter": 1000}, 0.97),
    ],
)
def test_two_stage_recall_at_10_against_exact(first_stage, options, threshold) -> None:
    pages, queries = clustered_pages(3000)
    exact = ExactIndex(64)
    exact.add(keys_for(3000), pages)
    two, _ = in_memory_two_stage(pages, first_stage=first_stage, candidates=300, **options)
    recalls = []
    for q in queries:
        truth, _ = exact.search(torch.from_numpy(q), 10)
        got, _ = two.search(torch.from_numpy(q), 10)
        recalls.append(len(set(truth.tolist()) & set(got.tolist())) / 10)
    assert np.mean(recalls) >= threshold, f"{first_stage} recall@10 {np.mean(recalls):.3f}"


def test_two_stage_add_delete_and_allowed_rows() -> None:
    pages, queries = clustered_pages(200)
    two, store = in_memory_two_stage(pages, first_stage="binary", candidates=20)
    q = torch.from_numpy(queries[0])
    allowed = np.arange(50, 80)
    rows, _ = two.search(q, 5, allowed)
    assert len(rows) == 5 and set(rows.tolist()) <= set(allowed.tolist())
    assert two.search(q, 5, np.zeros(0, np.int64))[0].size == 0
    # delete: rows close up in the first stage and the fetched store alike
    gone = keys_for(10, start=20)
    two.delete(gone)
    store.delete(np.arange(20, 30))
    assert len(two) == len(two.first) == 190 and not set(gone) & set(two.keys)
    extra, _ = clustered_pages(5, seed=9)
    two.add(keys_for(5, start=1000), extra)
    store.append(extra)
    assert len(two.first) == 195
    rows, _ = two.search(torch.from_numpy(extra[0][:6].astype(np.float32)), 1)
    assert two.keys[rows[0]] == keys_for(1, start=1000)[0]
    with pytest.raises(ValueError, match="already in the index"):
        two.add(keys_for(1, start=1000), extra[:1])


# ------------------------------------------------------------------ on a real index
REPRESENTATIONS = {
    "default": {},  # two_stage + ivf_binary; untrained on a few pages, so exact MaxSim
    "exact-f16": {"index": "exact"},
    "exact-int8": {"index": "exact", "storage_dtype": "int8"},
    "two-stage-mean": {"index": "two_stage", "first_stage": "mean", "segments": 2, "candidates": 3},
    "two-stage-binary": {"index": "two_stage", "first_stage": "binary", "candidates": 3},
    "two-stage-cascade": {
        "index": "two_stage",
        "first_stage": "cascade",
        "prefilter": 4,
        "candidates": 3,
    },
    "two-stage-ann": {"index": "two_stage", "first_stage": "ann", "probe": 4, "candidates": 3},
    "two-stage-ivf": {
        "index": "two_stage",
        "first_stage": "ivf",
        "centroids": 4,
        "nprobe": 2,
        "candidates": 3,
    },
    "pooled-binary-int8": {
        "index": "two_stage",
        "first_stage": "binary",
        "candidates": 4,
        "pool_factor": 2,
        "storage_dtype": "int8",
    },
}


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mv-docs")
    mixed = make_mixed_pdf(root / "mixed.pdf")
    extra = make_sample_pdf(root / "extra.pdf", ["Lighthouse keepers log.", "Tide tables."])
    return mixed.path, extra


def make_index(path, colpali: str, options: dict, **kw) -> MultimodalIndex:
    spec = LegSpec(
        name="page",
        options={"encoder": {"name": "colpali", "options": {"model": colpali}}, **options},
    )
    config = IndexConfig(ingest=IngestConfig(ocr="never", dpi=72), legs=[spec])
    return MultimodalIndex.create(path, config, **kw)


def leg_scores(index: MultimodalIndex, question: str, k: int = 10, **kw) -> dict:
    hits = index.retriever(legs=["page"]).leg_hits(question, k=k, **kw)["page"]
    return {h.key: h.score for h in hits}


@pytest.mark.parametrize("name", list(REPRESENTATIONS))
def test_representation_exact_round_trip_and_filters(name, tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    options = REPRESENTATIONS[name]
    index = make_index(tmp_path / "index", tiny_colpali, options)
    assert not index.add([pdfs[0]]).failed
    leg = index.legs["page"]
    keys, mats = leg.stored_vectors(index.store)
    if options.get("pool_factor"):  # stored vectors are the pooled ones (about half)
        from PIL import Image

        n_raw = leg.encoder.encode_document([Image.new("RGB", (64, 64), "white")])[0].shape[0]
        assert all(0 < m.shape[0] <= n_raw // 2 for m in mats), (n_raw, [len(m) for m in mats])
    question = "annual rainfall in Quillon province"
    q = leg.encoder.encode_query([question])[0].float()
    ref = score_multi_vector([q], [torch.from_numpy(np.asarray(m, np.float32)) for m in mats])[0]
    expected = {key: float(s) for key, s in zip(keys, ref, strict=True)}
    got = leg_scores(index, question)
    assert got == pytest.approx({k: expected[k] for k in got}, rel=1e-3, abs=1e-3)
    k_expected = leg.candidates if options.get("index") == "two_stage" else len(keys)
    assert len(got) == min(k_expected, len(keys))
    if "candidates" not in options:  # exact: the full ranking
        assert list(got) == sorted(expected, key=lambda k: (-expected[k], k))

    # filters: only allowed pages, same scores
    some = leg_scores(index, question, filters={"page_index": {"gte": 1, "lte": 2}})
    assert sorted(p for _, p in some) == [1, 2]
    assert some == pytest.approx({k: expected[k] for k in some}, rel=1e-3, abs=1e-3)

    # the manifest keeps the representation; the reopened index ranks the same
    reopened = MultimodalIndex.open(index.uri)
    assert reopened.legs["page"].config() == leg.config()
    for key, value in options.items():
        assert reopened.legs["page"].config()[key] == value
    assert leg_scores(reopened, question) == pytest.approx(got, rel=1e-5)


def test_two_stage_follows_adds_deletes_and_image_queries(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    options = {"index": "two_stage", "first_stage": "binary", "candidates": 4}
    index = make_index(tmp_path / "index", tiny_colpali, options)
    index.add([pdfs[0]])
    leg = index.legs["page"]
    built = leg._mv  # the writer built the first stage to save it (readers never write)
    assert built is not None and leg.memory_bytes() > 0
    assert len(list((tmp_path / "index" / "_page_index").rglob("meta.json"))) == 1
    before = leg_scores(index, "rainfall")
    mv = leg._index(index.store)
    assert mv is built and len(mv) == len(mv.first) == 5  # the query did not rebuild it

    report = index.add([pdfs[1]])
    assert leg._index(index.store) is mv and len(mv.first) == 7  # updated in place
    new_doc = report.added[0] if hasattr(report, "added") else None
    new_ids = {d["doc_id"] for d in index.documents()} - {k[0] for k in before}
    assert len(new_ids) == 1
    (new_id,) = new_ids
    assert new_doc is None or new_doc
    found = leg_scores(index, "lighthouse", k=10, filters={"doc_id": new_id})
    assert {p for _, p in found} == {0, 1}

    # a query image finds its own page through the first stage
    page = index.retriever(legs=["page"]).retrieve("tide", k=7, filters={"doc_id": new_id})[0]
    by_image = leg.retrieve(index.store, Query(image=page.image().convert("RGB")), k=1)
    assert by_image[0].key[0] == new_id

    old_id = next(iter(before))[0]
    index.delete(old_id)
    assert leg._index(index.store) is mv and len(mv) == len(mv.first) == 2
    assert {k[0] for k in leg_scores(index, "rainfall")} == {new_id}

    reopened = MultimodalIndex.open(index.uri)
    assert leg_scores(reopened, "tide") == pytest.approx(leg_scores(index, "tide"), rel=1e-5)


# ------------------------------------------------------------------ saved first stages
@pytest.mark.parametrize("first_stage", ["mean", "binary", "cascade", "ivf", "ivf_binary"])
def test_two_stage_state_round_trip(first_stage, tmp_path) -> None:
    from mm_retriever.multivector.persist import load_state, save_state

    pages, queries = clustered_pages(300)
    opts = {"centroids": 16, "nprobe": 2} if first_stage.startswith("ivf") else {}
    two, store = in_memory_two_stage(pages, first_stage=first_stage, candidates=30, **opts)
    save_state(tmp_path, 7, two.config(), two.state())
    version, arrays = load_state(tmp_path, 9, two.config())
    assert version == 7 and load_state(tmp_path, 6, two.config()) is None
    again = TwoStageIndex(64, store.take, first_stage=first_stage, candidates=30, **opts)
    again.restore(arrays)
    assert again.keys == two.keys and again.config() == two.config()
    for q in queries[:5]:
        a, b = two.search(torch.from_numpy(q), 10), again.search(torch.from_numpy(q), 10)
        assert a[0].tolist() == b[0].tolist()
    # the restored index keeps changing in place (memory-mapped copy-on-write)
    again.delete(keys_for(5))
    extra, _ = clustered_pages(3, seed=5)
    again.add(keys_for(3, start=900), extra)
    assert len(again) == len(again.first) == 298
    save_state(tmp_path, 8, again.config(), again.state())
    assert [p.name.split("-")[0] for p in tmp_path.glob("v*")] == ["v8"]  # older state dropped


def test_saved_first_stage_is_loaded_by_the_next_process(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    options = {"index": "two_stage", "first_stage": "ivf", "centroids": 4, "candidates": 3}
    index = make_index(tmp_path / "index", tiny_colpali, options)
    index.add([pdfs[0]])
    saved = list((tmp_path / "index" / "_page_index").rglob("meta.json"))
    assert len(saved) == 1  # saved by the writer, before any search
    first = leg_scores(index, "rainfall")

    other = MultimodalIndex.open(index.uri)
    leg = other.legs["page"]

    def no_full_read(*_a, **_k):
        raise AssertionError("the saved state should have been loaded, not rebuilt")

    leg._build = no_full_read
    assert leg_scores(other, "rainfall") == pytest.approx(first, rel=1e-5)
    assert leg._mv.first.trained

    index.add([pdfs[1]])  # another writer: the loaded state takes only the new rows
    found = leg_scores(other, "lighthouse", k=7)
    assert len(leg._mv) == 7 and len(found) == 3


def test_damaged_saved_state_costs_a_rebuild_not_an_answer(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    options = {"index": "two_stage", "first_stage": "ivf", "centroids": 4, "candidates": 3}
    index = make_index(tmp_path / "index", tiny_colpali, options)
    index.add([pdfs[0]])
    first = leg_scores(index, "rainfall")
    (saved,) = (tmp_path / "index" / "_page_index").rglob("*list_ids.npy")
    saved.write_bytes(b"not a numpy file")
    reopened = MultimodalIndex.open(index.uri)
    assert leg_scores(reopened, "rainfall") == pytest.approx(first, rel=1e-5)
    assert saved.read_bytes() == b"not a numpy file"  # the reader rebuilt in RAM, wrote nothing
    reopened.optimize()  # a writer replaces the damaged state
    third = MultimodalIndex.open(index.uri)
    third.legs["page"]._build = None  # calling it would fail
    assert leg_scores(third, "rainfall") == pytest.approx(first, rel=1e-5)


def test_state_rows_round_trip_in_parts(tmp_path, monkeypatch) -> None:
    """The ``page_index_state`` table keeps any array (split into parts) and only the newest
    state of a leg; loaded arrays are writable copies."""
    from mm_retriever.store import LanceDBStore, array_states

    monkeypatch.setattr(array_states, "PART_BYTES", 100)  # every array below spans parts
    rng = np.random.default_rng(3)
    arrays = {
        "codes": rng.integers(0, 255, size=(37, 9), dtype=np.uint8),
        "means": rng.standard_normal((11, 8)).astype(np.float16),
        "names": np.asarray(["doc-a", "doc-bb", "c"], dtype=str),
        "flags": rng.random(300) > 0.5,
        "empty": np.zeros((0, 4), dtype=np.int32),
    }
    store = LanceDBStore(tmp_path / "index")
    assert store.load_state("leg_page", 5, "k1") is None and not store.has_state("leg_page", "k1")
    store.save_state("leg_page", 3, "k1", arrays)
    store.save_state("leg_other", 3, "k1", {"x": np.arange(5)})
    assert store.has_state("leg_page", "k1") and not store.has_state("leg_page", "k2")
    assert store.load_state("leg_page", 2, "k1") is None
    version, loaded = store.load_state("leg_page", 9, "k1")
    assert version == 3 and sorted(loaded) == sorted(arrays)
    for name, arr in arrays.items():
        assert loaded[name].dtype == arr.dtype and np.array_equal(loaded[name], arr)
    loaded["codes"][0, 0] += 1  # writable, and private to this process
    assert store.load_state("leg_page", 9, "k1")[1]["codes"][0, 0] == arrays["codes"][0, 0]
    store.save_state("leg_page", 4, "k1", {"x": np.arange(3)})
    saved = store.table(array_states.STATE_TABLE).to_arrow()
    page_rows = saved.filter(pa.compute.equal(saved.column("leg"), "leg_page"))
    assert set(page_rows.column("version").to_pylist()) == {4}  # the older state is gone
    assert store.load_state("leg_other", 9, "k1")[0] == 3  # other legs keep theirs
    assert store.check() == []


def test_object_store_index_saves_its_first_stage(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    """On S3 (moto's server on 127.0.0.1) the writer saves the first stage in the index's
    ``page_index_state`` table; a fresh reader loads it instead of rebuilding and writes nothing."""
    from mm_retriever.store.array_states import STATE_TABLE

    with moto_s3() as (s3, storage):

        def objects() -> dict[str, tuple[str, str]]:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket="indexes")
            listed = [o for page in pages for o in page.get("Contents", [])]
            return {o["Key"]: (o["ETag"], str(o["LastModified"])) for o in listed}

        uri = "s3://indexes/visual"
        options = {"index": "two_stage", "first_stage": "ivf", "centroids": 4, "candidates": 3}
        index = make_index(uri, tiny_colpali, options, storage_options=storage)
        index.add([pdfs[0]])
        assert any(k.startswith(f"visual/{STATE_TABLE}.lance/data/") for k in objects())
        first = leg_scores(index, "rainfall")

        builds = []
        before = objects()
        other = MultimodalIndex.open(uri, storage_options=storage)
        leg = other.legs["page"]
        leg._build = lambda *a, **k: builds.append(a)  # counts full reads (none expected)
        assert leg_scores(other, "rainfall") == pytest.approx(first, rel=1e-5)
        assert builds == [] and leg._mv.first.trained  # loaded the saved first stage
        assert objects() == before  # the search wrote nothing

        index.add([pdfs[1]])  # the writer saves the new state and drops the old one
        saved = index.store.table(STATE_TABLE).to_arrow()
        assert set(saved.column("version").to_pylist()) == {index.store.version(leg.table)}
        third = MultimodalIndex.open(uri, storage_options=storage)
        third.legs["page"]._build = lambda *a, **k: builds.append(a)
        assert leg_scores(third, "lighthouse", k=7) == pytest.approx(
            leg_scores(index, "lighthouse", k=7), rel=1e-5
        )
        assert builds == [] and len(third.legs["page"]._mv) == 7


def test_a_search_never_writes_the_page_index(tmp_path, pdfs, tiny_colpali) -> None:  # noqa: F811
    """Also when no saved first stage exists: the reader builds in RAM, the disk is unchanged."""
    import shutil

    options = {"index": "two_stage", "first_stage": "ivf", "centroids": 4, "candidates": 3}
    index = make_index(tmp_path / "index", tiny_colpali, options)
    index.add([pdfs[0]])
    state = tmp_path / "index" / "_page_index"
    shutil.rmtree(state)  # e.g. an index written before the writer saved it

    def files() -> dict[str, float]:
        return {str(p): p.stat().st_mtime for p in (tmp_path / "index").rglob("*")}

    before = files()
    reopened = MultimodalIndex.open(index.uri)
    assert leg_scores(reopened, "rainfall")
    assert files() == before and not state.exists()
    reopened.add([pdfs[1]])  # the next write saves it
    assert len(list(state.rglob("meta.json"))) == 1
