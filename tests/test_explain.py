"""Where a page matched, on real documents: word boxes, chunk boxes, figure bboxes, OCR boxes,
ColPali similarity maps (tiny random model), and the overlay PNG."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from pdfgen import SCAN_FACT, make_mixed_pdf, make_sample_pdf
from PIL import Image
from serve_helpers import CHART_QUESTION, build_text_index
from shared_fixtures import text_index_config
from tiny_models import tiny_colpali  # noqa: F401  (session fixture)

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.explain import PageNotFoundError, explain_page, locate, overlay_png
from mm_retriever.index import MultimodalIndex
from mm_retriever.store import FIGURES


@pytest.fixture(scope="module")
def solar(tmp_path_factory, minilm_path: str) -> MultimodalIndex:
    return MultimodalIndex.open(build_text_index(tmp_path_factory.mktemp("explain"), minilm_path))


def _chart_page(index: MultimodalIndex):
    pages = index.retriever().retrieve(CHART_QUESTION, k=3)
    assert pages[0].citation == "solar_market_outlook_2025.pdf, p. 2"
    return pages[0]


def test_text_terms_chunks_and_figure_located_on_the_chart_page(solar: MultimodalIndex) -> None:
    page = _chart_page(solar)
    exp = page.explain(solar, CHART_QUESTION)
    assert exp.word_source == "layer" and not exp.notes
    assert set(exp.leg_scores) == {"text", "bm25", "figure"}
    assert exp.leg_scores["bm25"] == pytest.approx(page.leg_scores["bm25"], rel=1e-5)

    # query terms: exactly PyMuPDF's word boxes of the matching words
    with pymupdf.open(page.source) as doc:
        words = {
            (w[4], tuple(round(v, 2) for v in w[:4]))
            for w in doc.load_page(page.page_index).get_text("words")
        }
    terms = [b for b in exp.boxes if b.kind == "term"]
    assert {b.text.lower() for b in terms} >= {"solar", "capacity", "region", "installations"}
    assert all(b.leg == "bm25" for b in terms)
    for b in terms:
        assert (b.text, tuple(round(v, 2) for v in b.bbox)) in words
        assert 0 < b.weight <= 1
    assert not any(b.text.lower() in {"the", "which", "between"} for b in terms)  # stop words

    # the figure leg's box is the stored crop's bbox
    figs = [b for b in exp.boxes if b.kind == "figure"]
    stored = solar.store.query(FIGURES, f"doc_id = '{page.doc_id}' AND page_index = 1").to_pylist()
    assert [tuple(round(v, 2) for v in f.bbox) for f in figs] == [
        tuple(round(float(v), 2) for v in stored[0]["bbox"])
    ]
    assert "Solar capacity" in figs[0].text

    # the dense leg's matched chunk is located: its boxes lie on the page and cover the heading
    chunks = [b for b in exp.boxes if b.kind == "chunk" and b.leg == "text"]
    assert chunks and all(
        0 <= b.bbox[0] < b.bbox[2] <= exp.width and 0 <= b.bbox[1] < b.bbox[3] <= exp.height
        for b in chunks
    )
    heading = next(b for b in terms if b.text == "Installations")
    assert any(_inside(heading.bbox, c.bbox) for c in chunks)


def test_overlay_png_draws_matches_over_the_page(solar: MultimodalIndex) -> None:
    page = _chart_page(solar)
    png = page.overlay_png(solar, CHART_QUESTION)
    overlay = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    plain = np.asarray(page.image().convert("RGB")).astype(int)
    assert overlay.shape == plain.shape
    exp = page.explain(solar, CHART_QUESTION)
    scale = plain.shape[1] / exp.width
    term = next(b for b in exp.boxes if b.text == "Installations")
    x0, y0, x1, y1 = (round(v * scale) for v in term.bbox)
    region = (slice(y0 + 1, y1 - 1), slice(x0 + 1, x1 - 1))
    # highlighter yellow: more red+green than blue where the word was, page untouched far away
    diff = overlay[region] - plain[region]
    assert (overlay[region][..., 2] < overlay[region][..., 0] - 30).mean() > 0.5
    assert np.abs(diff).mean() > 10
    blank = (slice(plain.shape[0] - 40, plain.shape[0] - 5), slice(5, 40))
    assert np.array_equal(overlay[blank], plain[blank])
    small = overlay_png(solar, CHART_QUESTION, page.doc_id, page.page_index, max_width=200)
    assert Image.open(io.BytesIO(small)).width == 200


def test_unknown_page_and_leg_subset(solar: MultimodalIndex) -> None:
    page = _chart_page(solar)
    with pytest.raises(PageNotFoundError):
        explain_page(solar, "solar", page.doc_id, 99)
    with pytest.raises(PageNotFoundError):
        explain_page(solar, "solar", "0000000000000000", 0)
    only_fig = explain_page(solar, CHART_QUESTION, page.doc_id, page.page_index, legs=["figure"])
    assert {b.kind for b in only_fig.boxes} == {"figure"}


def test_locate_finds_the_chunk_window() -> None:
    words = [
        "intro",
        "text",
        "here",
        "the",
        "fleet",
        "has",
        "47",
        "electric",
        "ferries",
        "end",
        "of",
        "page",
    ]
    chunk = "The fleet has 47 electric ferries".lower().split()
    assert locate(chunk, words) == (3, 9)
    assert locate(["absent", "words", "only"], words) is None


@pytest.fixture(scope="module")
def ocr_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ocr-cache")


def test_ocr_page_boxes_from_the_ingest_cache(
    tmp_path_factory, minilm_path: str, ocr_cache: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(ocr_cache))
    root = tmp_path_factory.mktemp("ocr")
    mixed = make_mixed_pdf(root / "mixed.pdf")
    config = text_index_config(minilm_path)
    config.ingest = IngestConfig(ocr="auto", dpi=72, ocr_figures=False)
    index = MultimodalIndex.create(root / "index", config)
    assert index.add([mixed.path]).ok
    question = "How many storms did the Pemberton lighthouse keeper log?"
    top = index.retriever().retrieve(question, k=1)[0]
    assert top.page_index == mixed.scan_page
    cached = sorted(ocr_cache.rglob("*.json"))
    assert cached  # the ingest OCR'd the scanned page
    exp = top.explain(index, question)
    assert exp.word_source == "ocr"  # the scan page has no layer words; the OCR lines do
    assert sorted(ocr_cache.rglob("*.json")) == cached  # read from the ingest's cache
    terms = {b.text.lower().strip(".,") for b in exp.boxes if b.kind == "term"}
    assert {"pemberton", "lighthouse", "storms"} <= terms
    assert any(b.kind == "chunk" for b in exp.boxes)
    assert "Pemberton" in SCAN_FACT


def test_source_gone_falls_back_to_ocr_of_the_stored_image(
    tmp_path_factory, minilm_path: str, ocr_cache: Path, monkeypatch
) -> None:
    """An ``encoded`` index keeps no copy of the file: once it moves, OCR of the stored page
    image gives the boxes. The default index keeps the file in its ``sources`` table and
    reads the text layer from there (uploads are deleted once indexed)."""
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(ocr_cache))
    root = tmp_path_factory.mktemp("gone")
    pdf = make_sample_pdf(root / "fleet.pdf", {0: "The fleet has exactly 47 electric ferries."})
    config = text_index_config(minilm_path)
    config.ingest = IngestConfig(ocr="never", dpi=144, image_store="encoded")
    encoded = MultimodalIndex.create(root / "encoded", config)
    assert encoded.add([pdf]).ok
    config.ingest = IngestConfig(ocr="never", dpi=144)
    kept = MultimodalIndex.create(root / "source", config)
    assert kept.add([pdf]).ok
    shutil.move(pdf, root / "moved.pdf")
    for index, source in ((encoded, "ocr"), (kept, "layer")):
        hit = index.retriever().retrieve("electric ferries", k=1)[0]
        exp = hit.explain(index, "electric ferries")
        assert exp.word_source == source
        assert {"electric", "ferries"} <= {b.text.lower().strip(".") for b in exp.boxes}


def test_colpali_similarity_maps_match_the_patch_embeddings(tmp_path, tiny_colpali) -> None:  # noqa: F811
    mixed = make_mixed_pdf(tmp_path / "mixed.pdf")
    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=[
            LegSpec(
                name="page",
                options={"encoder": {"name": "colpali", "options": {"model": tiny_colpali}}},
            )
        ],
        device="cpu",
    )
    index = MultimodalIndex.create(tmp_path / "index", config)
    assert index.add([mixed.path]).ok
    question = "annual rainfall in Quillon province"
    page = index.retriever().retrieve(question, k=1)[0]
    exp = page.explain(index, question)
    sim = exp.similarity
    assert sim is not None and sim.leg == "page" and not exp.notes
    assert sim.combined.shape == (4, 4)  # tiny ColPali: 32x32 px images, 8 px patches
    assert sim.per_token.shape == (len(sim.tokens), 4, 4) and sim.tokens
    assert np.allclose(sim.combined, sim.per_token.max(axis=0))

    # the maps are the query-token x image-patch dot products, patches in row-major order
    encoder = index.legs["page"].encoder
    q = encoder.encode_query([question])[0].float().numpy()
    d = encoder.encode_document([page.image()])[0].float().numpy()[:16]  # image tokens first
    expected = (q @ d.T).reshape(len(q), 4, 4)
    assert np.allclose(sim.per_token, expected[sim.token_positions], atol=1e-4)

    overlay = Image.open(io.BytesIO(page.overlay_png(index, question)))
    assert overlay.size == page.image().size
    token_view = Image.open(io.BytesIO(page.overlay_png(index, question, token=0)))
    assert token_view.size == overlay.size
    with pytest.raises(ValueError, match="out of range"):
        page.overlay_png(index, question, token=len(sim.tokens))
    assert exp.to_dict()["similarity"]["grid"] == [4, 4]


def _inside(inner, outer, slack: float = 1.0) -> bool:
    return (
        inner[0] >= outer[0] - slack
        and inner[1] >= outer[1] - slack
        and inner[2] <= outer[2] + slack
        and inner[3] <= outer[3] + slack
    )
