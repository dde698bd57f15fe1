"""The small pieces of ingestion: chunking, captions, clustering, text cleaning, rotation."""

from __future__ import annotations

import itertools

import numpy as np
import pdfgen
import pymupdf
import pytest

from mm_retriever.config import IngestConfig
from mm_retriever.ingest import DocumentReader
from mm_retriever.ingest.captions import find_caption, is_caption
from mm_retriever.ingest.chunking import Unit, chunk_units, split_long
from mm_retriever.ingest.figures import cluster_rects
from mm_retriever.ingest.text import TextBlock, TextLine, clean_text, garbled_fraction


def block(text: str, bbox) -> TextBlock:
    return TextBlock(text, bbox, [TextLine(text, bbox)])


@pytest.mark.parametrize(
    "text",
    ["Figure 3: Sales", "FIG. 2 Results", "Fig.4", "Table 1 - Costs", "Chart A: x", "Exhibit 99.1"],
)
def test_caption_prefixes(text):
    assert is_caption(text)


@pytest.mark.parametrize(
    "text", ["Figures show growth", "Table of contents", "The figure below", "Charter school"]
)
def test_not_captions(text):
    assert not is_caption(text)


def test_caption_is_the_nearest_prefixed_block():
    fig = (100, 200, 400, 400)
    blocks = [
        block("Figure 7: Far below the chart", (100, 470, 400, 480)),
        block("Figure 6: Right under the chart", (100, 408, 400, 418)),
        block("Some body text that mentions the chart in passing.", (100, 180, 400, 192)),
        block("Figure 9: In the other column", (450, 402, 560, 412)),  # no horizontal overlap
    ]
    assert find_caption(fig, blocks, 792) == "Figure 6: Right under the chart"


def test_caption_falls_back_to_the_title_above():
    fig = (100, 200, 400, 400)
    blocks = [
        block("Report header far above the figure", (100, 40, 400, 52)),
        block("Support for trade rose in both countries", (100, 150, 400, 170)),
        block("% who say trade is good for the country", (100, 174, 400, 184)),
        block("U.S. Germany", (150, 188, 300, 196)),  # column heads: stepped over
        block("Source: survey of 2019.", (100, 404, 400, 412)),
    ]
    assert find_caption(fig, blocks, 792) == (
        "Support for trade rose in both countries % who say trade is good for the country"
    )
    assert find_caption(fig, blocks[:1], 792) == ""  # too far away


def test_cluster_rects_groups_nearby_boxes():
    rects = np.array(
        [
            [10, 10, 20, 20],
            [22, 10, 30, 20],  # 2pt from the first: same cluster
            [100, 100, 110, 110],
            [31, 21, 40, 30],  # touches the grown first cluster diagonally
            [300, 300, 301, 400],
        ],
        dtype=float,
    )
    clusters = sorted(sorted(c) for c in cluster_rects(rects, gap=4))
    assert clusters == [[0, 1, 3], [2], [4]]


def test_chunks_pack_units_with_overlap():
    units = [
        Unit(f"Paragraph {i} " + "word " * 20, (0, i * 20, 100, i * 20 + 10)) for i in range(10)
    ]
    chunks = chunk_units(units, size=300, overlap=120)
    assert len(chunks) > 1
    assert all(len(c.text) <= 300 for c in chunks)
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.text.split("\n")[-1] == nxt.text.split("\n")[0]  # one unit carried over
        assert nxt.bbox[1] <= prev.bbox[3]  # overlapping chunks overlap on the page too
    assert "Paragraph 9" in chunks[-1].text and "Paragraph 0" in chunks[0].text
    assert chunk_units([], 300, 50) == [] and chunk_units([Unit("  ", None)], 300, 50) == []


def test_split_long_breaks_at_words():
    text = " ".join(f"w{i}" for i in range(400))
    pieces = split_long(text, 200, 40)
    assert all(len(p) <= 200 for p in pieces)
    assert pieces[0].startswith("w0 ") and pieces[-1].endswith("w399")
    assert all(not p.startswith(" ") and not p.endswith(" ") for p in pieces)
    words = {w for p in pieces for w in p.split()}
    assert words == set(text.split())  # no word is cut in half


def test_clean_text_and_garbled_share():
    assert (
        clean_text("  ﬁnal\u00a0\u00a0report \n\n  second   line ") == "final report\nsecond line"
    )
    assert garbled_fraction("plain text") == 0
    assert garbled_fraction("\ufffd\ufffd\ufffdab") == pytest.approx(0.6)


def test_rotated_page_boxes_are_in_visible_coordinates(tmp_path):
    """A landscape page stored as portrait + /Rotate 90, its content upright on screen."""
    src = pymupdf.open()
    pdfgen.add_vector_chart_page(src)
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.set_rotation(90)
    page.show_pdf_page(page.cropbox, src, 0, rotate=90, clip=pymupdf.Rect(0, 0, 612, 470))
    path = tmp_path / "rotated.pdf"
    doc.save(path)
    with DocumentReader(path, IngestConfig(ocr="never")) as reader:
        page = reader.page(0)
    assert (page.width, page.height) == (792, 612)
    assert page.image.size == (792 * 2, 612 * 2)
    assert len(page.figures) == 1
    fig = page.figures[0]
    x0, y0, x1, y1 = fig.bbox
    assert 0 <= x0 < x1 <= 792 and 0 <= y0 < y1 <= 612
    assert fig.caption == pdfgen.VECTOR_CAPTION
    assert "North" in fig.inside_text
    assert fig.image.width > fig.image.height  # the chart is wider than tall, as shown
    for chunk in page.chunks:
        cx0, cy0, cx1, cy1 = chunk.bbox
        assert 0 <= cx0 < cx1 <= 792 and 0 <= cy0 < cy1 <= 612
