"""Query by image (``QueryBundle(image_path=...)``) on an index with image legs.

Legs: page images (tiny random ColPali), figures (tiny random CLIP crops), BM25. The models are
random, so the test checks the plumbing exactly: which legs answer, and that a figure crop used
as the query finds itself (image-image cosine 1) through the figure leg.
"""

from __future__ import annotations

import base64

import pytest
from llama_index.core.schema import ImageNode, QueryBundle
from llama_index.retrievers.mm_retriever import MMRetriever
from tiny_models import tiny_clip, tiny_colpali, visual_legs  # noqa: F401  (session fixtures)

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.protocols import Query


@pytest.fixture(scope="module")
def visual_index(tmp_path_factory, mixed, tiny_colpali, tiny_clip):  # noqa: F811
    from mm_retriever.index import MultimodalIndex

    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=[*visual_legs(tiny_colpali, tiny_clip), LegSpec(name="bm25")],
        device="cpu",
    )
    index = MultimodalIndex.create(tmp_path_factory.mktemp("visual") / "idx", config)
    report = index.add([mixed.path])
    assert not report.failed and report.pages == 5
    return index


def test_image_query_searches_page_and_figure_legs(visual_index, mixed, tmp_path):
    chart = mixed.figures[0]  # the raster chart on page 3
    on_page = {"page_index": chart.page_index}
    hits = MMRetriever(index=visual_index, similarity_top_k=1, filters=on_page).retrieve("chart")
    crop = next(n.node for n in hits if n.node.metadata["kind"] == "figure")
    query_image = tmp_path / "chart.png"
    query_image.write_bytes(base64.b64decode(crop.image))

    retriever = MMRetriever(index=visual_index, similarity_top_k=5)
    nodes = retriever.retrieve(QueryBundle(query_str="", image_path=str(query_image)))
    texts = [n for n in nodes if n.node.metadata["kind"] == "page_text"]
    assert len(texts) == 5  # every page has page-leg vectors
    for n in texts:
        assert set(n.node.metadata["leg_ranks"]) <= {"page", "figure"}
    assert all("page" in n.node.metadata["leg_ranks"] for n in texts)
    # the figure leg ranks the crop's own page first, with the crop attached as an ImageNode
    best_fig = next(n for n in texts if n.node.metadata["leg_ranks"].get("figure") == 1)
    assert best_fig.node.metadata["page_index"] == chart.page_index
    assert best_fig.node.metadata["leg_scores"]["figure"] == pytest.approx(0.5, abs=1e-3)
    figs = [
        n.node
        for n in nodes
        if isinstance(n.node, ImageNode) and n.node.metadata["kind"] == "figure"
    ]
    assert any(f.metadata["page_index"] == chart.page_index for f in figs)


async def test_image_query_async_with_text(visual_index, mixed, tmp_path):
    query_image = tmp_path / "page.jpg"
    page = visual_index.retriever().retrieve("Quillon rainfall", k=1)[0]
    query_image.write_bytes(page.image_bytes)
    retriever = MMRetriever(index=visual_index, similarity_top_k=2)
    bundle = QueryBundle(query_str="rainfall chart", image_path=str(query_image))
    nodes = await retriever.aretrieve(bundle)
    ranks = [n.node.metadata["leg_ranks"] for n in nodes if n.node.metadata["kind"] == "page_text"]
    assert ranks and all("bm25" not in r for r in ranks)  # the text legs are not asked
    # a text query on the same retriever uses every leg
    plain = retriever.retrieve("rainfall chart")
    assert any("bm25" in n.node.metadata["leg_ranks"] for n in plain)


@pytest.mark.parametrize("clean", [True, False])
def test_image_queries_keep_the_query_cleaning_setting(visual_index, clean):
    retriever = MMRetriever(index=visual_index, retriever_kwargs={"clean_query": clean})
    image_hybrid = retriever._image_hybrid()
    assert image_hybrid.clean_query is clean
    question = "Which chart shows rainfall? Round your answer to two decimals."
    assert (image_hybrid.prepare(Query(text=question)).text == question) is not clean


def test_image_queries_keep_every_retriever_setting(visual_index):
    """The image path is the same retriever over fewer legs: nothing is rebuilt by hand."""
    kwargs = {"pin_references": False, "document_prior": 0.25, "candidates": 7, "max_figures": 1}
    retriever = MMRetriever(index=visual_index, retriever_kwargs=kwargs)
    image_hybrid = retriever._image_hybrid()
    text_hybrid = retriever._retriever
    assert image_hybrid.leg_names == ["page", "figure"] != text_hybrid.leg_names
    for name in ("pin_references", "candidates", "max_figures", "clean_query", "expand_query"):
        assert getattr(image_hybrid, name) == getattr(text_hybrid, name)
    assert image_hybrid.pin_references is False
    assert image_hybrid.document_prior is text_hybrid.document_prior
    assert image_hybrid.document_prior.weight == 0.25
    assert image_hybrid.fusion is text_hybrid.fusion
