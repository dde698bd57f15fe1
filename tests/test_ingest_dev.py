"""Ingestion on a real report from the dev set (Pew Research, charts as images and vectors)."""

from __future__ import annotations

import pytest

from mm_retriever.config import IngestConfig
from mm_retriever.ingest import DocumentReader

PEW = "PG_2020.03.09_US-Germany_FINAL.pdf"


@pytest.fixture(scope="module")
def pew(dev_set):
    path = dev_set / "pdfs" / PEW
    assert path.is_file(), f"{PEW} not found in {dev_set / 'pdfs'}"
    with DocumentReader(path, IngestConfig(ocr="never")) as reader:
        yield reader


def test_pew_report_pages_and_text(pew):
    assert pew.n_pages == 21
    assert pew.title == "PG_2020.03.09_US-Germany_FINAL"  # the PDF has no title in its metadata
    page = pew.page(3)
    assert page.text_source == "layer"
    assert "Americans and Germans Differ in Their Views of Each Other" in page.text
    assert (page.width, page.height) == (612, 792)
    for chunk in page.chunks:
        x0, y0, x1, y1 = chunk.bbox
        assert 0 <= x0 < x1 <= 612 and 0 <= y0 < y1 <= 792


def test_pew_raster_chart_gets_its_title_as_caption(pew):
    figs = pew.page(3).figures
    assert len(figs) == 1
    fig = figs[0]
    assert fig.kind == "raster"
    assert fig.bbox == pytest.approx((235, 235, 545, 396), abs=3)
    assert fig.caption.startswith(
        "Americans and Germans diverge sharply in their views of bilateral relations"
    )
    assert fig.image.width > 500  # cropped at 144 dpi


def test_pew_vector_charts_with_labels_inside(pew):
    page = pew.page(13)
    kinds = sorted(f.kind for f in page.figures)
    assert kinds == ["raster", "vector"]
    vector = next(f for f in page.figures if f.kind == "vector")
    assert vector.caption.startswith("Germans prioritize the U.S. relationship over China")
    for label in ["Russia", "China", "Americans", "Germans", "61%"]:
        assert label in vector.inside_text
    assert "Note:" not in vector.inside_text  # the source note below stays out

    bars = pew.page(7).figures  # a line chart and a bar chart with row labels
    assert [f.kind for f in bars] == ["vector", "vector"]
    assert "Republican support for increased defense spending" in bars[0].caption
    assert "CDU/CSU" in bars[1].inside_text and "Greens" in bars[1].inside_text


def test_pew_text_pages_have_no_figures(pew):
    for index in (1, 2, 18):
        assert pew.page(index).figures == []
