"""The relevance floor: ``confidence`` and ``weak_match`` on hits, ``min_score`` per call and
per retriever, and both on every surface (CLI, HTTP, MCP, LangChain, LlamaIndex)."""

from __future__ import annotations

import json

import pytest
from pdfgen import make_sample_pdf
from shared_fixtures import text_index_config
from typer.testing import CliRunner

from mm_retriever.cli import app
from mm_retriever.errors import InvalidQueryError
from mm_retriever.index import MultimodalIndex
from mm_retriever.ranking import relevance

ON_TOPIC = "Who was the keeper of the Pellham lighthouse?"
GIBBERISH = "qzxv wplokj trmbbe yuxx?"
FACTS = {
    "a.pdf": ["The keeper of the Pellham lighthouse was Ada Moss, from 1881 to 1904.", "Tides."],
    "b.pdf": ["Rainfall in Saltby reached 812 mm in 2023.", "The harbour froze twice."],
    "c.pdf": ["Electric ferries: the fleet counts 14 vessels.", "Timetables change in May."],
}


@pytest.fixture(scope="module")
def index(tmp_path_factory, minilm_path: str) -> MultimodalIndex:
    root = tmp_path_factory.mktemp("relevance")
    pdfs = [make_sample_pdf(root / name, facts) for name, facts in FACTS.items()]
    idx = MultimodalIndex.create(root / "idx", text_index_config(minilm_path))
    assert not idx.add(pdfs).failed
    return idx


def test_the_test_index_has_the_calibrated_legs(index: MultimodalIndex) -> None:
    assert sorted(relevance.calibrated_legs(index.legs).values()) == ["bm25", "text"]


def test_hits_carry_a_confidence_that_separates_a_match_from_gibberish(index) -> None:
    retriever = index.retriever()
    hits = retriever.retrieve(ON_TOPIC, k=3)
    noise = retriever.retrieve(GIBBERISH, k=3)
    for page in hits + noise:
        assert 0.0 <= page.confidence <= 1.0
        assert page.weak_match == (page.confidence < relevance.WEAK_BELOW)
    assert hits[0].citation == "a.pdf, p. 1"
    assert not hits[0].weak_match
    assert all(p.weak_match for p in noise)
    assert hits[0].confidence > max(p.confidence for p in noise)


def test_min_score_drops_the_pages_under_it(index) -> None:
    retriever = index.retriever()
    every = retriever.retrieve(ON_TOPIC, k=5)
    floor = sorted(p.confidence for p in every)[len(every) // 2]  # the median: some go
    kept = retriever.retrieve(ON_TOPIC, k=5, min_score=floor)
    assert [p.key for p in kept] == [p.key for p in every if p.confidence >= floor]
    assert 0 < len(kept) < len(every)
    assert index.retriever(min_score=floor).retrieve(ON_TOPIC, k=5) == kept  # per retriever
    assert len(index.retriever(min_score=floor).retrieve(ON_TOPIC, k=5, min_score=0.0)) == 5
    assert retriever.retrieve(GIBBERISH, k=5, min_score=relevance.WEAK_BELOW) == []


def test_legs_the_calibration_does_not_know_get_no_confidence(index) -> None:
    figure_only = {"figure": index.legs["figure"]}  # figure text: a leg the map was not fitted on
    assert relevance.calibrated_legs(figure_only) == {}
    pages = index.retriever().retrieve(ON_TOPIC, k=2)
    relevance.rate(pages, figure_only)
    assert pages and all(p.confidence is None and p.weak_match is None for p in pages)
    with pytest.raises(InvalidQueryError, match="min_score needs a calibrated confidence"):
        index.retriever(legs=["figure"]).retrieve(ON_TOPIC, k=1, min_score=0.5)


def test_every_surface_shows_confidence_and_takes_min_score(index) -> None:
    import anyio
    from fastapi.testclient import TestClient
    from langchain_mm_retriever import MMRetriever as LCRetriever
    from llama_index.retrievers.mm_retriever import MMRetriever as LIRetriever

    from mm_retriever.mcp_server import build_server
    from mm_retriever.serve import ServeSettings, create_app

    best = index.retriever().retrieve(ON_TOPIC, k=1)[0]
    uri = str(index.path)

    out = CliRunner().invoke(app, ["search", ON_TOPIC, "--index", uri, "-k", "1", "--json"])
    assert json.loads(out.stdout)[0]["confidence"] == pytest.approx(best.confidence)
    table = CliRunner().invoke(app, ["search", ON_TOPIC, "--index", uri, "-k", "1"])
    assert f"{best.confidence:.2f}" in table.output
    none = CliRunner().invoke(app, ["search", GIBBERISH, "--index", uri, "--min-score", "0.5"])
    assert none.exit_code == 0 and "No page reaches a confidence of 0.5" in none.output

    with TestClient(create_app(ServeSettings(index=uri))) as client:
        hit = client.post("/search", json={"query": ON_TOPIC, "k": 1}).json()[0]
        assert hit["confidence"] == pytest.approx(best.confidence)
        assert hit["weak_match"] is False
        empty = client.post("/search", json={"query": GIBBERISH, "min_score": 0.5})
        assert empty.status_code == 200 and empty.json() == []

    server = build_server(index)
    found = anyio.run(server.call_tool, "search", {"query": ON_TOPIC, "k": 1, "images": False})
    assert f"confidence: {best.confidence:.2f}" in found.content[0].text
    weak = anyio.run(server.call_tool, "search", {"query": GIBBERISH, "k": 1, "images": False})
    assert "(weak match)" in weak.content[0].text
    nothing = anyio.run(server.call_tool, "search", {"query": GIBBERISH, "min_score": 0.5})
    assert nothing.content[0].text == "No matching pages."

    docs = LCRetriever(index=index, k=1).invoke(ON_TOPIC)
    assert docs[0].metadata["confidence"] == pytest.approx(best.confidence)
    assert LCRetriever(index=index, k=3, min_score=0.5).invoke(GIBBERISH) == []
    nodes = LIRetriever(index=index, similarity_top_k=1, figures=False).retrieve(ON_TOPIC)
    assert nodes[0].node.metadata["confidence"] == pytest.approx(best.confidence)
    assert LIRetriever(index=index, min_score=0.5).retrieve(GIBBERISH) == []
