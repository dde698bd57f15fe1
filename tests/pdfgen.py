"""Generate small, realistic test documents with PyMuPDF and Pillow (fast: well under a second).

Good documents:

- ``make_sample_pdf(path, facts)``: one page per entry, each with a clear, unique fact (for
  retrieval tests with an unambiguous answer page).
- ``make_mixed_pdf(path)``: five pages of different kinds -- text, table, embedded raster chart
  ("Figure 1: ..."), vector-drawn chart ("Figure 2: ..."), scanned page (image only, no text layer).
  Returns a :class:`MixedPDF` describing what lies where (facts, words, figure bboxes).
- ``make_scanned_pdf(path)``: one scanned memo page (image only; ``SCAN_LINES``).
- ``make_image_document(path)``: a PNG/JPEG of a page of text (an image-only "document").

Bad files (each must raise ``IngestError``): ``make_corrupt_pdf``, ``make_encrypted_pdf``,
``make_fake_pdf`` (not a PDF, named .pdf), ``make_empty_pdf`` (zero pages),
``make_unsupported_file`` (.txt).

``make_test_files(folder)`` writes all of them and returns their paths by name.

``make_filing_pdf(path, company, fiscal_year)``: a small SEC-style 10-K / 10-Q (cover, table
of contents, risk factors, MD&A, the four statements, notes; ``FILING_PAGES`` says which page
is which).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFont

LETTER = (612.0, 792.0)  # US letter, points
SCAN_SIZE = (612.0, 300.0)  # the scanned memo page
MARGIN = 72.0
ENCRYPTED_PASSWORD = "s3cret"

# Facts, one per page of the mixed PDF; each is unambiguous and findable by its rare words.
TEXT_FACT = "The Zorblax observatory recorded 4,812 meteor sightings during the spring of 2019."
TABLE_FACT = "Quarterly widget shipments by plant"
TABLE_ROWS = [
    ["Plant", "Q1", "Q2", "Q3"],
    ["Halvorsen", "1,204", "1,377", "1,512"],
    ["Kestrelmoor", "884", "912", "1,033"],
    ["Umbergate", "2,450", "2,601", "2,718"],
]
RASTER_CAPTION = "Figure 1: Annual rainfall in Quillon province by decade"
RASTER_LABELS = ["1990s", "2000s", "2010s", "2020s"]
RASTER_VALUES = [620, 710, 540, 800]
VECTOR_CAPTION = "Figure 2: Revenue of Tarragant Motors by region in 2023"
VECTOR_LABELS = ["North", "South", "East", "West"]
VECTOR_VALUES = [42, 27, 35, 18]
VECTOR_AXIS_TITLE = "Revenue (USD millions)"
SCAN_FACT = "The Pemberton lighthouse keeper logged seventeen storms in March."
SCAN_LINES = [
    "Coastal Safety Bulletin",
    SCAN_FACT,
    "Each storm was recorded with its wind speed and direction.",
    "Ships were advised to remain in harbour for two days.",
]
FILLER = (
    "This page continues the general discussion of the report. It gives background on the "
    "methods, the sources consulted and the limits of the data, so that readers can judge "
    "the findings for themselves."
)


@dataclass
class FigureSpec:
    """Where a generated figure lies and what describes it."""

    page_index: int
    kind: str  # "raster" | "vector"
    bbox: tuple[float, float, float, float]  # PDF points, the drawn chart's extent
    caption: str
    inside_words: list[str] = field(default_factory=list)


@dataclass
class MixedPDF:
    """What ``make_mixed_pdf`` wrote: page kinds, facts and figures."""

    path: Path
    kinds: list[str]  # per page: text, table, raster, vector, scan
    facts: dict[int, str]  # page index -> the unique fact on that page
    figures: list[FigureSpec]
    table_bbox: tuple[float, float, float, float]  # the ruled grid on page 1 (not a figure)
    scan_page: int
    scan_words: list[str]  # words OCR must find on the scanned page
    title: str = "Mixed test report"


# ---------------------------------------------------------------- page builders


def _write_paragraphs(page: pymupdf.Page, paragraphs: Sequence[str], top: float = MARGIN) -> float:
    """Write paragraphs as wrapped text boxes from ``top``; returns the y below the last one."""
    y = top
    width = page.rect.width - 2 * MARGIN
    for para in paragraphs:
        rect = pymupdf.Rect(MARGIN, y, MARGIN + width, page.rect.height - MARGIN)
        spare = page.insert_textbox(rect, para, fontsize=11, fontname="helv")
        used = rect.height - spare if spare >= 0 else rect.height
        y += used + 10
    return y


def add_line_page(
    doc: pymupdf.Document, lines: Sequence[str], gap: float = 40, fontsize: float = 11
) -> pymupdf.Page:
    """A page with one text block a line, ``gap`` points apart (as captions and headings
    stand in papers: each its own block)."""
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    for i, line in enumerate(lines):
        page.insert_text((MARGIN, MARGIN + gap * i), line, fontsize=fontsize)
    return page


def add_text_page(doc: pymupdf.Document, heading: str, body: Sequence[str]) -> pymupdf.Page:
    """A page with a bold heading and wrapped body paragraphs."""
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    page.insert_text((MARGIN, MARGIN), heading, fontsize=16, fontname="hebo")
    _write_paragraphs(page, body, top=MARGIN + 14)
    return page


def add_table_page(
    doc: pymupdf.Document, caption: str, rows: Sequence[Sequence[str]], intro: str = FILLER
) -> tuple[pymupdf.Page, pymupdf.Rect]:
    """A page with an intro paragraph, a caption and a ruled table grid. Returns the grid rect."""
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    y = _write_paragraphs(page, [intro])
    page.insert_text((MARGIN, y + 14), f"Table 1: {caption}", fontsize=11, fontname="hebo")
    top = y + 24
    col_w, row_h = 110.0, 24.0
    n_cols, n_rows = len(rows[0]), len(rows)
    grid = pymupdf.Rect(MARGIN, top, MARGIN + n_cols * col_w, top + n_rows * row_h)
    for r in range(n_rows + 1):
        page.draw_line((grid.x0, top + r * row_h), (grid.x1, top + r * row_h), width=0.8)
    for c in range(n_cols + 1):
        page.draw_line((MARGIN + c * col_w, grid.y0), (MARGIN + c * col_w, grid.y1), width=0.8)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            font = "hebo" if r == 0 else "helv"
            page.insert_text(
                (MARGIN + c * col_w + 6, top + r * row_h + 16), cell, fontsize=10, fontname=font
            )
    outro = "Shipments rose in every plant over the three quarters."
    _write_paragraphs(page, [outro], grid.y1 + 20)
    return page, grid


def bar_chart_png(
    labels: Sequence[str], values: Sequence[float], size: tuple[int, int] = (600, 400)
) -> bytes:
    """A bar chart drawn with Pillow (axes, bars, labels, values) as PNG bytes."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=22)
    left, bottom, top = 70, h - 50, 30
    draw.line([(left, top), (left, bottom), (w - 20, bottom)], fill="black", width=3)
    vmax = max(values)
    slot = (w - 20 - left) / len(values)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x0 = left + i * slot + slot * 0.2
        x1 = x0 + slot * 0.6
        y0 = bottom - (bottom - top - 30) * value / vmax
        draw.rectangle([x0, y0, x1, bottom], fill=(40, 90, 170))
        draw.text(((x0 + x1) / 2, y0 - 4), str(value), fill="black", font=font, anchor="md")
        draw.text(((x0 + x1) / 2, bottom + 8), label, fill="black", font=font, anchor="ma")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def add_raster_chart_page(doc: pymupdf.Document) -> tuple[pymupdf.Page, pymupdf.Rect]:
    """A page with a paragraph, an embedded PNG bar chart and its caption below it."""
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    y = _write_paragraphs(
        page,
        [
            "Rainfall in Quillon province has varied widely over the last four decades, "
            "as the chart below shows. " + FILLER
        ],
    )
    rect = pymupdf.Rect(MARGIN + 30, y + 10, MARGIN + 30 + 360, y + 10 + 240)
    page.insert_image(rect, stream=bar_chart_png(RASTER_LABELS, RASTER_VALUES))
    page.insert_text((rect.x0, rect.y1 + 18), RASTER_CAPTION, fontsize=10, fontname="helv")
    _write_paragraphs(page, ["The wettest decade was the 2020s."], rect.y1 + 40)
    return page, rect


def add_vector_chart_page(doc: pymupdf.Document) -> tuple[pymupdf.Page, pymupdf.Rect]:
    """A page with a bar chart drawn as vector graphics (axes, bars, labels) and a caption."""
    page = doc.new_page(width=LETTER[0], height=LETTER[1])
    y = _write_paragraphs(
        page,
        ["Tarragant Motors sells in four regions; the North leads by a wide margin. " + FILLER],
    )
    chart = pymupdf.Rect(MARGIN + 20, y + 20, MARGIN + 20 + 380, y + 20 + 260)
    left, bottom, top = chart.x0 + 40, chart.y1 - 30, chart.y0 + 20
    page.insert_text((chart.x0, chart.y0 + 8), VECTOR_AXIS_TITLE, fontsize=9, fontname="helv")
    page.draw_line((left, top), (left, bottom), width=1.2)
    page.draw_line((left, bottom), (chart.x1, bottom), width=1.2)
    vmax = max(VECTOR_VALUES)
    for tick in range(0, vmax + 1, 10):  # y ticks and gridlines
        ty = bottom - (bottom - top) * tick / vmax
        page.draw_line((left - 4, ty), (left, ty), width=0.8)
        page.insert_text((left - 24, ty + 3), str(tick), fontsize=8, fontname="helv")
    slot = (chart.x1 - left) / len(VECTOR_VALUES)
    for i, (label, value) in enumerate(zip(VECTOR_LABELS, VECTOR_VALUES, strict=True)):
        x0 = left + i * slot + slot * 0.2
        x1 = x0 + slot * 0.6
        y0 = bottom - (bottom - top) * value / vmax
        page.draw_rect(pymupdf.Rect(x0, y0, x1, bottom), color=None, fill=(0.8, 0.3, 0.2))
        page.insert_text((x0 + 4, y0 - 4), str(value), fontsize=9, fontname="helv")
        page.insert_text((x0 + 2, bottom + 14), label, fontsize=9, fontname="helv")
    page.insert_text((chart.x0, chart.y1 + 16), VECTOR_CAPTION, fontsize=10, fontname="helv")
    _write_paragraphs(page, ["Western sales fell for the second year."], chart.y1 + 36)
    return page, chart


def text_image(
    lines: Sequence[str], size_pt: tuple[float, float] = LETTER, dpi: int = 150
) -> Image.Image:
    """A page of text rendered to an RGB image (what a scanner would produce), no text layer."""
    tmp = pymupdf.open()
    page = tmp.new_page(width=size_pt[0], height=size_pt[1])
    page.insert_text((MARGIN, MARGIN + 10), lines[0], fontsize=18, fontname="hebo")
    _write_paragraphs(page, lines[1:], top=MARGIN + 30)
    pix = page.get_pixmap(dpi=dpi)
    img = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    tmp.close()
    return img


def add_scanned_page(
    doc: pymupdf.Document, lines: Sequence[str] = SCAN_LINES, size: tuple[float, float] = SCAN_SIZE
) -> pymupdf.Page:
    """A page that holds only an image of text (no text layer): OCR must read it.

    The default page is a short memo (612 x 300 pt), which keeps OCR in tests quick.
    """
    img = text_image(lines, size_pt=size)
    buf = io.BytesIO()
    img.convert("L").save(buf, format="PNG")
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_image(page.rect, stream=buf.getvalue())
    return page


# ---------------------------------------------------------------- documents


def make_sample_pdf(
    path: str | Path,
    facts: Mapping[int, str | Sequence[str]] | Sequence[str],
    *,
    n_pages: int | None = None,
    title: str = "Sample report",
) -> Path:
    """A text PDF where page ``i`` states ``facts[i]`` (other pages hold neutral filler).

    ``facts`` maps 0-based page index -> fact (or several sentences), or is a list (one fact a
    page). Every page has a heading and enough text-layer characters that ``ocr="auto"`` does
    not trigger. Returns the path.
    """
    if not isinstance(facts, Mapping):
        facts = dict(enumerate(facts))
    count = n_pages if n_pages is not None else (max(facts, default=-1) + 1)
    if count < 1:
        raise ValueError("a sample PDF needs at least one page")
    doc = pymupdf.open()
    for i in range(count):
        fact = facts.get(i)
        body = [fact] if isinstance(fact, str) else list(fact or [])
        add_text_page(doc, f"{title}, section {i + 1}", [*body, FILLER])
    doc.set_metadata({"title": title, "author": "mm-retriever tests"})
    return save_pdf(doc, path)


def make_mixed_pdf(path: str | Path) -> MixedPDF:
    """Five pages: text, table, raster chart, vector chart, scanned text (in that order)."""
    doc = pymupdf.open()
    add_text_page(doc, "Observatory notes", [TEXT_FACT, FILLER])
    _, grid = add_table_page(doc, TABLE_FACT, TABLE_ROWS)
    _, raster = add_raster_chart_page(doc)
    _, vector = add_vector_chart_page(doc)
    add_scanned_page(doc)
    title = "Mixed test report"
    doc.set_metadata({"title": title, "author": "mm-retriever tests"})
    out = save_pdf(doc, path)
    return MixedPDF(
        path=out,
        kinds=["text", "table", "raster", "vector", "scan"],
        facts={0: TEXT_FACT, 1: TABLE_FACT, 2: RASTER_CAPTION, 3: VECTOR_CAPTION, 4: SCAN_FACT},
        figures=[
            FigureSpec(2, "raster", tuple(raster), RASTER_CAPTION, list(RASTER_LABELS)),
            FigureSpec(3, "vector", tuple(vector), VECTOR_CAPTION, [*VECTOR_LABELS, "Revenue"]),
        ],
        table_bbox=tuple(grid),
        scan_page=4,
        scan_words=["Pemberton", "lighthouse", "seventeen", "storms"],
        title=title,
    )


def make_scanned_pdf(path: str | Path, lines: Sequence[str] = SCAN_LINES) -> Path:
    """A one-page PDF holding only a scanned memo (no text layer): for OCR tests."""
    doc = pymupdf.open()
    add_scanned_page(doc, lines)
    doc.set_metadata({"title": "Scanned memo"})
    return save_pdf(doc, path)


def make_image_document(
    path: str | Path, lines: Sequence[str] = SCAN_LINES, size: tuple[int, int] = (800, 360)
) -> Path:
    """A PNG or JPEG (by suffix) of a page of text; ``size`` in pixels."""
    path = Path(path)
    dpi = 100  # text about 15 px high: legible for OCR
    img = text_image(lines, size_pt=(size[0] * 72 / dpi, size[1] * 72 / dpi), dpi=dpi)
    img = img.resize(size) if img.size != size else img
    fmt = "JPEG" if path.suffix.lower() in {".jpg", ".jpeg"} else "PNG"
    img.save(path, format=fmt)
    return path


# ---------------------------------------------------------------- bad files


def make_corrupt_pdf(path: str | Path) -> Path:
    """A PDF header followed by garbage (truncated / damaged file)."""
    path = Path(path)
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%garbage")
    return path


def make_encrypted_pdf(path: str | Path, password: str = ENCRYPTED_PASSWORD) -> Path:
    """A valid PDF that needs a user password to open."""
    doc = pymupdf.open()
    add_text_page(doc, "Confidential", ["This document is encrypted.", FILLER])
    path = Path(path)
    doc.save(
        path,
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw=password,
        owner_pw=password + "-owner",
    )
    doc.close()
    return path


def make_fake_pdf(path: str | Path) -> Path:
    """A plain-text file with a .pdf name."""
    path = Path(path)
    path.write_text("This is not a PDF, just text with the wrong file name.\n")
    return path


def make_empty_pdf(path: str | Path) -> Path:
    """A syntactically valid PDF whose page tree holds zero pages (PyMuPDF cannot save one)."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    trailer = b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
    out.write(trailer % (len(objs) + 1, xref))
    path = Path(path)
    path.write_bytes(out.getvalue())
    return path


def make_unsupported_file(path: str | Path) -> Path:
    """A file with an extension ingestion does not handle (e.g. .txt, .docx)."""
    path = Path(path)
    path.write_text("plain notes\n")
    return path


def make_test_files(folder: str | Path) -> dict[str, Path]:
    """Write every generator's output into ``folder``; returns name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "sample": make_sample_pdf(folder / "sample.pdf", ["The capital of Freedonia is Lumen."]),
        "mixed": make_mixed_pdf(folder / "mixed.pdf").path,
        "scanned": make_scanned_pdf(folder / "scanned.pdf"),
        "png": make_image_document(folder / "scan.png"),
        "jpeg": make_image_document(folder / "scan.jpg"),
        "corrupt": make_corrupt_pdf(folder / "corrupt.pdf"),
        "encrypted": make_encrypted_pdf(folder / "encrypted.pdf"),
        "fake": make_fake_pdf(folder / "fake.pdf"),
        "empty": make_empty_pdf(folder / "empty.pdf"),
        "unsupported": make_unsupported_file(folder / "notes.txt"),
    }


# the pages of ``make_filing_pdf``, in order: (section, heading)
FILING_PAGES = (
    ("cover", ""),
    ("toc", ""),
    ("risk_factors", "Item 1A. Risk Factors"),
    ("mda", "ITEM 7. MANAGEMENT'S DISCUSSION AND ANALYSIS OF FINANCIAL CONDITION"),
    ("mda", ""),
    ("income_statement", "CONSOLIDATED STATEMENTS OF INCOME"),
    ("balance_sheet", "CONSOLIDATED BALANCE SHEETS"),
    ("cash_flow", "CONSOLIDATED STATEMENTS OF CASH FLOWS"),
    ("equity", "CONSOLIDATED STATEMENTS OF SHAREHOLDERS' EQUITY"),
    ("notes", "NOTE 1 - SUMMARY OF SIGNIFICANT ACCOUNTING POLICIES"),
    ("notes", "NOTE 2 - INVENTORIES"),
)


def make_filing_pdf(
    path: str | Path,
    company: str,
    fiscal_year: int,
    *,
    form: str = "10-K",
    ticker: str = "",
    period_end: str = "May 31",
    name_on_cover: bool = True,
) -> Path:
    """A small SEC filing of ``company`` for ``fiscal_year`` (pages as ``FILING_PAGES``): the
    statements carry the year's and the prior year's columns; ``name_on_cover=False`` leaves
    the registrant's name off the cover (a logo), as some filings do."""
    y, p = fiscal_year, fiscal_year - 1
    kind = "fiscal year" if form == "10-K" else "quarterly period"
    cover = [
        "UNITED STATES",
        "SECURITIES AND EXCHANGE COMMISSION",
        "Washington, D.C. 20549",
        f"FORM {form}",
        "ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934"
        if form == "10-K"
        else "QUARTERLY REPORT PURSUANT TO SECTION 13 OR 15(d)",
        f"For the {kind} ended {period_end}, {y}",
        "Commission File Number 1-10635",
        company if name_on_cover else "",
        "(Exact name of registrant as specified in its charter)",
        "Securities registered pursuant to Section 12(b) of the Act:",
        "Title of each class    Trading Symbol(s)    Name of each exchange",
        "Common Stock",
        ticker,
        "New York Stock Exchange",
        "Securities registered pursuant to Section 12(g) of the Act: None",
    ]
    toc = ["TABLE OF CONTENTS", "PART I"] + [
        f"Item {n}. {t} {pg}"
        for n, t, pg in (
            ("1", "Business", 1),
            ("1A", "Risk Factors", 3),
            ("2", "Properties", 9),
            ("7", "Management's Discussion and Analysis", 12),
            ("7A", "Quantitative and Qualitative Disclosures about Market Risk", 20),
            ("8", "Financial Statements and Supplementary Data", 22),
        )
    ]
    head = f"{company} AND SUBSIDIARIES"
    pages = [
        cover,
        toc,
        ["Item 1A. Risk Factors", "Competition, supply chains and currency rates affect results."],
        [
            "ITEM 7. MANAGEMENT'S DISCUSSION AND ANALYSIS OF FINANCIAL CONDITION",
            f"Revenues rose 7% in fiscal {y}; gross margin expanded on pricing.",
        ],
        [
            "Liquidity and capital resources",
            "Cash flow from operations funded capital expenditures and dividends.",
            "Our Consolidated Balance Sheets show total current assets above liabilities.",
        ],
        [
            head,
            "CONSOLIDATED STATEMENTS OF INCOME",
            f"Year ended {period_end},    {y}    {p}",
            "Revenues    39,117    36,397",
            "Cost of sales    21,643    20,441",
            "Gross profit    17,474    15,956",
            "Net income    4,029    1,933",
        ],
        [
            head,
            "CONSOLIDATED BALANCE SHEETS",
            f"{period_end},    {y}    {p}",
            "Cash and equivalents    4,466    4,249",
            "Inventories    5,622    5,261",
            "Total current assets    16,525    15,134",
            "Total current liabilities    7,866    6,040",
            "Total assets    23,717    22,536",
        ],
        [
            head,
            "CONSOLIDATED STATEMENTS OF CASH FLOWS",
            f"Year ended {period_end},    {y}    {p}",
            "Net income    4,029    1,933",
            "Cash provided by operations    5,903    4,955",
            "Additions to property, plant and equipment    (1,119)    (1,028)",
            "Dividends    (1,332)    (1,243)",
        ],
        [
            head,
            "CONSOLIDATED STATEMENTS OF SHAREHOLDERS' EQUITY",
            "Balance at beginning of year    9,812    12,407",
            "Repurchase of common stock    (4,286)    (4,254)",
        ],
        [
            "NOTES TO CONSOLIDATED FINANCIAL STATEMENTS",
            "NOTE 1 - SUMMARY OF SIGNIFICANT ACCOUNTING POLICIES",
            "The consolidated financial statements include the accounts of the company.",
        ],
        [
            "NOTE 2 - INVENTORIES",
            "Inventories are stated at the lower of cost and net realizable value.",
        ],
    ]
    doc = pymupdf.open()
    for lines in pages:
        add_line_page(doc, [ln for ln in lines if ln], gap=18)
    doc.set_metadata({"title": f"{company} {form} {y}"})
    return save_pdf(doc, path)


def save_pdf(doc: pymupdf.Document, path: str | Path) -> Path:
    """Save ``doc`` to ``path`` (folders made; same bytes every run) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc.save(path, garbage=3, deflate=True, no_new_id=True)  # same bytes every run
    doc.close()
    return path
