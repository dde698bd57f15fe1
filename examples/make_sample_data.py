"""Generate the sample PDFs in examples/data used by `mm-retriever demo`.

The documents are synthetic but shaped like real reports: running text, a vector-drawn chart (a
matplotlib figure embedded as vector graphics), a table, a raster chart, and a scanned page with no
text layer (so only OCR can read it). Run: ``uv run python examples/make_sample_data.py``.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pymupdf
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).parent / "data"
A4 = pymupdf.paper_rect("a4")
MARGIN = 56


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def _text(
    page: pymupdf.Page, y: float, text: str, size: float = 10.5, height: float = 160
) -> float:
    rect = pymupdf.Rect(MARGIN, y, A4.width - MARGIN, y + height)
    page.insert_textbox(rect, text, fontsize=size, fontname="helv")
    return y + height


def _vector_chart(doc: pymupdf.Document, page: pymupdf.Page, rect: pymupdf.Rect) -> None:
    regions = ["Asia-Pacific", "Europe", "North America", "Latin America", "Africa"]
    gw = [412, 136, 98, 41, 12]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(regions, gw, color=["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e"])
    ax.set_ylabel("Installed capacity (GW)")
    ax.set_title("Solar capacity added 2020-2024 by region")
    for i, v in enumerate(gw):
        ax.text(i, v + 5, str(v), ha="center", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="pdf")
    plt.close(fig)
    chart = pymupdf.open("pdf", buf.getvalue())
    page.show_pdf_page(rect, chart, 0)  # stays vector graphics


def solar_report(path: Path) -> None:
    doc = pymupdf.open()
    p = doc.new_page(width=A4.width, height=A4.height)
    y = _text(p, MARGIN, "Global Solar Market Outlook 2025", size=20, height=40)
    _text(
        p,
        y,
        "Executive summary. Solar photovoltaics remained the fastest growing source of new "
        "electricity in 2024. Module prices fell for the third year in a row, driven by "
        "manufacturing overcapacity, while grid connection queues became the main bottleneck "
        "in Europe and North America. Utility-scale projects accounted for 61 percent of new "
        "capacity; rooftop systems made up the rest.\n\nThis report reviews installations by "
        "region, module prices by technology, and the outlook for storage paired with solar.",
        height=300,
    )
    p = doc.new_page(width=A4.width, height=A4.height)
    y = _text(p, MARGIN, "1. Installations by region", size=14, height=30)
    y = _text(
        p,
        y,
        "Asia-Pacific led installations by a wide margin, followed by Europe. The chart below "
        "shows cumulative additions over five years.",
        height=50,
    )
    _vector_chart(doc, p, pymupdf.Rect(MARGIN, y, A4.width - MARGIN, y + 260))
    _text(p, y + 268, "Figure 1: Solar capacity added 2020-2024 by region (GW).", size=9, height=20)
    p = doc.new_page(width=A4.width, height=A4.height)
    y = _text(p, MARGIN, "2. Module prices", size=14, height=30)
    y = _text(p, y, "Table 1: Average module price by technology, USD per watt.", size=9, height=24)
    rows = [
        ("Technology", "2022", "2023", "2024"),
        ("Monocrystalline PERC", "0.27", "0.19", "0.11"),
        ("TOPCon", "0.29", "0.21", "0.12"),
        ("Heterojunction", "0.34", "0.25", "0.15"),
        ("Thin film (CdTe)", "0.31", "0.27", "0.24"),
    ]
    col = [MARGIN, MARGIN + 200, MARGIN + 290, MARGIN + 380, MARGIN + 470]
    for r, row in enumerate(rows):
        top = y + r * 24
        for c, cell in enumerate(row):
            cell_rect = pymupdf.Rect(col[c], top, col[c + 1], top + 24)
            p.draw_rect(cell_rect, color=(0, 0, 0), width=0.6)
            p.insert_text(
                (cell_rect.x0 + 5, cell_rect.y0 + 16), cell, fontsize=9.5, fontname="helv"
            )
    _text(
        p,
        y + len(rows) * 24 + 20,
        "TOPCon overtook PERC as the most shipped technology in 2024. Thin-film prices fell the "
        "least because of tight supply of tellurium.",
        height=60,
    )
    doc.set_metadata(
        {"title": "Global Solar Market Outlook 2025", "author": "mm-retriever examples"}
    )
    doc.save(path, garbage=4, deflate=True)


def _rainfall_chart() -> Image.Image:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun"]
    mm = [88, 64, 131, 52, 47, 39]
    fig, ax = plt.subplots(figsize=(5, 2.8), dpi=110)
    ax.plot(months, mm, marker="o", color="#1f78b4")
    for x, v in zip(months, mm, strict=True):
        ax.annotate(f"{v} mm", (x, v), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_ylabel("Rainfall (mm)")
    ax.set_title("Monthly rainfall, Harbour Point station")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(buf).convert("RGB")


def water_survey(path: Path) -> None:
    doc = pymupdf.open()
    p = doc.new_page(width=A4.width, height=A4.height)
    y = _text(p, MARGIN, "Harbour Point Water Survey, first half of 2025", size=18, height=40)
    _text(
        p,
        y,
        "The municipal water board measures rainfall, reservoir levels and household use every "
        "month. Reservoir storage stood at 78 percent of capacity at the end of June. Average "
        "household use fell to 121 litres per person per day after the hosepipe ban in May.\n\n"
        "The second page is a scan of the rainfall log signed by the station officer.",
        height=200,
    )
    # A scanned page: text and a chart exist only as pixels, no text layer.
    scale = 2
    img = Image.new("RGB", (int(A4.width * scale), int(A4.height * scale)), "white")
    draw = ImageDraw.Draw(img)
    draw.text((110, 110), "Rainfall log - Harbour Point station", fill="black", font=_font(36))
    lines = [
        "March was the wettest month of the half-year with 131 mm of rain.",
        "The driest month was June with 39 mm; the reservoir inflow fell accordingly.",
        "Station officer: R. Okafor. Checked against the automatic gauge.",
    ]
    for i, line in enumerate(lines):
        draw.text((110, 200 + i * 44), line, fill="black", font=_font(26))
    chart = _rainfall_chart()
    img.paste(chart, (110, 360))
    draw.text(
        (110, 380 + chart.height), "Figure 2: Monthly rainfall (mm).", fill="black", font=_font(24)
    )
    img = img.rotate(0.6, fillcolor="white")  # a slightly skewed scan
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    p = doc.new_page(width=A4.width, height=A4.height)
    p.insert_image(p.rect, stream=buf.getvalue())
    doc.set_metadata({"title": "Harbour Point Water Survey", "author": "mm-retriever examples"})
    doc.save(path, garbage=4, deflate=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    solar_report(OUT / "solar_market_outlook_2025.pdf")
    water_survey(OUT / "harbour_point_water_survey.pdf")
    for f in sorted(OUT.glob("*.pdf")):
        print(f, f.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
