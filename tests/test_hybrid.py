"""HybridRetriever: fusion choices and weights, filters, image-only and empty queries, async."""

from __future__ import annotations

import shutil

import pytest
from pdfgen import make_sample_pdf
from PIL import Image

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec, PluginSpec
from mm_retriever.errors import EmptyQueryError, InvalidQueryError
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import Query
from mm_retriever.ranking.fusion import RRFFusion, WeightedFusion

ALPHA = [
    "The Harrowgate mill ground 900 sacks of rye in 1850.",
    "Tidewater ferries carry cars between Port Elgin and Saltby.",
    "The Harrowgate mill closed after the flood of 1872.",
]
BETA = [
    "The Saltby lighthouse was automated in 1988.",
    "The Harrowgate mill pond froze solid in the winter of 1895.",
]


@pytest.fixture(scope="module")
def index(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("hybrid")
    alpha = make_sample_pdf(root / "docs" / "alpha.pdf", ALPHA, title="Alpha chronicle")
    beta = make_sample_pdf(root / "docs" / "beta.pdf", BETA, title="Beta notes")
    enc = {"name": "sentence-transformers", "options": {"model": minilm_path}}
    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72, figures=False),
        legs=[
            LegSpec(name="text", options={"encoder": enc}),
            LegSpec(name="bm25", weight=2.0),
        ],
        fusion=PluginSpec(name="rrf", options={"k": 10}),
    )
    idx = MultimodalIndex.create(root / "index", config)
    report = idx.add([alpha, beta])
    assert not report.failed
    idx.paths = {"alpha": alpha, "beta": beta}
    idx.ids = {name: report.doc_ids[str(p)] for name, p in idx.paths.items()}
    return idx


def test_rrf_from_config_with_leg_weights(index) -> None:
    retriever = index.retriever(document_prior=0)  # scores: the fusion's alone
    assert isinstance(retriever.fusion, RRFFusion)
    assert retriever.fusion.k == 10 and retriever.fusion.weights == {"text": 1.0, "bm25": 2.0}
    pages = retriever.retrieve("When did the Harrowgate mill close?", k=5)
    assert (pages[0].doc_id, pages[0].page_index) == (index.ids["alpha"], 2)
    for p in pages:
        want = sum(
            {"text": 1.0, "bm25": 2.0}[leg] / (10 + rank) for leg, rank in p.leg_ranks.items()
        )
        assert p.score == pytest.approx(want)
    assert [p.score for p in pages] == sorted((p.score for p in pages), reverse=True)


def test_fusion_and_weight_overrides(index) -> None:
    q = "Harrowgate mill"
    weighted = index.retriever(fusion="weighted", document_prior=0).retrieve(q, k=5)
    assert all(0 <= p.score <= 3.0 + 1e-9 for p in weighted)  # weights 1 + 2, minmax in [0, 1]
    z = index.retriever(fusion=WeightedFusion(normalization="zscore")).retrieve(q, k=5)
    assert len(z) == 5
    only_text = index.retriever(weights={"bm25": 0.0}, document_prior=0).retrieve(q, k=5)
    for p in only_text:
        want = 1.0 / (10 + p.leg_ranks["text"]) if "text" in p.leg_ranks else 0.0
        assert p.score == pytest.approx(want)
    subset = index.retriever(legs=["bm25"]).retrieve(q, k=5)
    assert all(set(p.leg_ranks) == {"bm25"} for p in subset)
    assert len(subset) == 3  # only three pages mention the mill
    with pytest.raises(ValueError, match="unknown leg"):
        index.retriever(legs=["page"])


def test_leg_hits_and_k(index) -> None:
    hits = index.retriever().leg_hits("Saltby", k=2)
    assert set(hits) == {"text", "bm25"}
    assert all(len(h) <= 2 for h in hits.values())
    assert [h.rank for h in hits["bm25"]] == list(range(1, len(hits["bm25"]) + 1))
    assert {h.doc_id for h in hits["bm25"]} == {index.ids["alpha"], index.ids["beta"]}
    assert len(index.retriever().retrieve("Saltby", k=50)) == 5  # every page, no more
    with pytest.raises(InvalidQueryError, match="k must be a whole number from 1 to 100, got 0"):
        index.retriever().retrieve("Saltby", k=0)


def test_answer_instructions_do_not_reach_the_legs(index) -> None:
    q = "When did the Harrowgate mill close?"
    noisy = f"{q} Write the answer in list format. Round your answer to the nearest year."
    plain = index.retriever().retrieve(q, k=5)
    cleaned = index.retriever().retrieve(noisy, k=5)
    assert [(p.key, p.leg_scores) for p in cleaned] == [(p.key, p.leg_scores) for p in plain]
    raw = index.retriever(clean_query=False).retrieve(noisy, k=5)
    assert [p.leg_scores for p in raw] != [p.leg_scores for p in plain]


def test_filters(index) -> None:
    r = index.retriever()
    q = "Harrowgate mill"
    beta_only = r.retrieve(q, k=5, filters={"doc_id": index.ids["beta"]})
    assert beta_only and {p.doc_id for p in beta_only} == {index.ids["beta"]}
    by_source = r.retrieve(q, k=5, filters={"source": [str(index.paths["beta"].resolve())]})
    assert [p.key for p in by_source] == [p.key for p in beta_only]
    by_title = r.retrieve(q, k=5, filters={"title": "Alpha chronicle", "page_index": {"gte": 1}})
    assert {p.key for p in by_title} <= {(index.ids["alpha"], 1), (index.ids["alpha"], 2)}
    assert (index.ids["alpha"], 2) in {p.key for p in by_title}
    assert r.retrieve(q, k=5, filters={"source": "nowhere.pdf"}) == []
    assert r.retrieve(q, k=5, filters={"source": "x' OR '1'='1"}) == []
    assert r.retrieve(q, k=5, filters={"doc_id": []}) == []
    with pytest.raises(ValueError, match="unknown filter column"):
        r.retrieve(q, k=5, filters={"text": "mill"})
    with pytest.raises(ValueError, match="needs integers"):
        r.retrieve(q, k=5, filters={"page_index": "1; DROP TABLE pages"})


def test_empty_and_image_only_queries(index) -> None:
    r = index.retriever()
    for empty in ("", "   ", "\n"):
        with pytest.raises(EmptyQueryError):
            r.retrieve(empty)
    image = Image.new("RGB", (32, 32), "white")
    assert r.leg_hits(image, k=5) == {"text": [], "bm25": []}  # text legs ignore images
    with pytest.raises(InvalidQueryError, match=r"image-only query.*\(text, bm25\) reads images"):
        r.retrieve(image, k=5)  # not an empty list: the caller learns why
    both = r.retrieve(Query(text="Saltby lighthouse", image=image), k=1)
    assert both[0].key == (index.ids["beta"], 0)


async def test_aretrieve_matches_retrieve(index) -> None:
    r = index.retriever()
    q = "Tidewater ferries"
    sync = r.retrieve(q, k=3)
    async_ = await r.aretrieve(q, k=3)
    assert [p.key for p in async_] == [p.key for p in sync]
    assert [p.score for p in async_] == pytest.approx([p.score for p in sync])


def test_image_options(index) -> None:
    shutil.rmtree(index.image_cache_dir, ignore_errors=True)  # written by earlier searches
    plain = index.retriever(include_images=False, write_images=False)
    (page,) = plain.retrieve("Tidewater ferries", k=1)
    assert page.image_bytes is None and page.image_path is None
    (page,) = index.retriever().retrieve("Tidewater ferries", k=1)
    assert page.image_bytes and page.image_path.endswith(f"{page.doc_id}/1.jpg")
    (again,) = index.retriever(include_images=False).retrieve("Tidewater ferries", k=1)
    assert again.image_path == page.image_path and again.image().size == page.image().size
