"""Tables as structure: header propagation and number normalisation, on generated PDFs."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from mm_retriever.config import IngestConfig
from mm_retriever.ingest.reader import DocumentReader
from mm_retriever.ingest.tables import (
    cell_text,
    extract_tables,
    normalize_number,
    scaled_words,
    table_lines,
    table_unit,
)

CELLS = [
    ["Segment", "2023", "2022"],
    ["Revenue", "4,512", "3,998"],
    ["Operating income", "(1,234)", "87"],
    ["Margin", "12.5%", "9 %"],
]


def _table_pdf(path: Path, cells: list[list[str]], unit_line: str = "(in millions)") -> Path:
    """One page with a ruled table at a known place and a unit line above it."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 90), "Consolidated results " + unit_line, fontsize=11)
    x0, y0, cw, rh = 72.0, 110.0, 140.0, 24.0
    n_rows, n_cols = len(cells), len(cells[0])
    for r in range(n_rows + 1):
        page.draw_line((x0, y0 + r * rh), (x0 + n_cols * cw, y0 + r * rh), width=0.8)
    for c in range(n_cols + 1):
        page.draw_line((x0 + c * cw, y0), (x0 + c * cw, y0 + n_rows * rh), width=0.8)
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            page.insert_text((x0 + c * cw + 6, y0 + r * rh + 16), text, fontsize=10)
    page.insert_text((72, 400), "Body text after the table says nothing about numbers.")
    doc.save(path)
    doc.close()
    return path


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("4,512", 4512.0),
        ("(1,234)", -1234.0),
        ("$4.5", 4.5),
        ("-17", -17.0),
        ("12.5%", 12.5),
        ("2 ,899", None),  # clean_cell re-joins it; the raw cell is not a number
        ("Revenue", None),
        ("", None),
    ],
)
def test_normalize_number(cell: str, value: float | None) -> None:
    assert normalize_number(cell) == value


def test_cells_and_units() -> None:
    assert cell_text("4,512", 1e6) == "4512 (4.5 billion)"
    assert cell_text("(1,234)", 1e3) == "-1234 (-1.2 million)"
    assert cell_text("2 ,899 ,", None) == "2899"  # a text layer with stray spaces
    assert cell_text("$ 3,753", None) == "3753"
    assert cell_text("19 %", 1e6) == "19%"  # percentages are not scaled
    assert scaled_words(4512, 1e6) == "4.5 billion"
    assert scaled_words(0.5, 1.0) == "0.5"
    assert table_unit(["Dollars in millions, except per share data"]) == 1e6
    assert table_unit(["(Inthousands)"]) == 1e3
    assert table_unit(["no unit here"]) is None


def test_header_propagation_spanning_and_multi_row_headers() -> None:
    rows = [
        ["(Dollars in millions)", "FISCAL", None, "% CHANGE"],
        ["", "2021", "2020", ""],
        ["Revenues", "$ 44,538", "37,403", "19 %"],
        ["Operating expenses:", "", "", ""],
        ["Cost of sales", "24,576", "21,162", "16 %"],
    ]
    lines = table_lines(rows, scale=1e6)
    assert lines == [
        "Revenues | FISCAL 2021 | 44538 (44.5 billion)",
        "Revenues | FISCAL 2020 | 37403 (37.4 billion)",
        "Revenues | % CHANGE | 19%",
        "Operating expenses:",
        "Cost of sales | FISCAL 2021 | 24576 (24.6 billion)",
        "Cost of sales | FISCAL 2020 | 21162 (21.2 billion)",
        "Cost of sales | % CHANGE | 16%",
    ]
    assert table_lines([]) == []


def test_extract_tables_from_generated_pdf(tmp_path: Path) -> None:
    pdf = _table_pdf(tmp_path / "t.pdf", CELLS)
    with pymupdf.open(pdf) as doc:
        tables = extract_tables(doc[0])
    assert len(tables) == 1
    t = tables[0]
    assert (t.rows, t.cols) == (4, 3)
    assert t.lines == [
        "Revenue | 2023 | 4512 (4.5 billion)",
        "Revenue | 2022 | 3998 (4 billion)",
        "Operating income | 2023 | -1234 (-1.2 billion)",
        "Operating income | 2022 | 87 (87 million)",
        "Margin | 2023 | 12.5%",
        "Margin | 2022 | 9%",
    ]
    x0, y0, x1, y1 = t.bbox
    assert x0 == pytest.approx(72, abs=2) and y0 == pytest.approx(110, abs=2)
    assert x1 == pytest.approx(72 + 3 * 140, abs=2) and y1 == pytest.approx(110 + 4 * 24, abs=2)


def test_page_without_table_has_none(tmp_path: Path) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "Just a paragraph, 4,512 apples.")
    doc.save(tmp_path / "plain.pdf")
    with pymupdf.open(tmp_path / "plain.pdf") as d:
        assert extract_tables(d[0]) == []


def test_ingest_adds_table_lines_to_text_and_chunks(tmp_path: Path) -> None:
    pdf = _table_pdf(tmp_path / "t.pdf", CELLS)
    with DocumentReader(pdf, IngestConfig(tables=True, ocr="never", figures=False)) as reader:
        page = reader.page(0)
    assert "Revenue | 2023 | 4512 (4.5 billion)" in page.text
    assert "Body text after the table" in page.text  # the layer text is kept
    assert any("Operating income | 2023 | -1234" in c.text for c in page.chunks)
    with DocumentReader(pdf, IngestConfig(ocr="never", figures=False)) as reader:
        plain = reader.page(0)
    assert "|" not in plain.text  # off by default
