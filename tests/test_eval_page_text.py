"""IngestConfig.page_text: merge (layer + OCR lines it lacks), layer only, or OCR only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from mm_retriever.config import IngestConfig
from mm_retriever.ingest import DocumentReader


@pytest.fixture()
def mixed_pdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One page: a text-layer line and a picture whose words exist only as pixels."""
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(tmp_path / "cache"))
    im = Image.new("RGB", (900, 160), "white")
    ImageDraw.Draw(im).text(
        (20, 40), "Kangaroo revenue", fill="black", font=ImageFont.load_default(size=56)
    )
    png = tmp_path / "words.png"
    im.save(png)
    doc = pymupdf.open()
    page = doc.new_page(width=450, height=200)
    page.insert_text((20, 30), "Layer sentence about turbines.", fontsize=12)
    page.insert_image(pymupdf.Rect(0, 60, 450, 140), filename=str(png))
    path = tmp_path / "mixed.pdf"
    doc.save(path)
    return path


def _page(path: Path, page_text: str):
    cfg = IngestConfig(ocr="always", ocr_engine="tesseract", page_text=page_text, figures=False)
    with DocumentReader(path, cfg) as reader:
        return next(iter(reader.pages()))[0]


@pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng",
)
def test_page_text_modes(mixed_pdf: Path) -> None:
    merged = _page(mixed_pdf, "merge")
    assert merged.text_source == "layer+ocr"
    assert "turbines" in merged.text and "kangaroo" in merged.text.lower()
    assert merged.text.count("turbines") == 1  # the OCR'd copy of the layer line is not added

    layer = _page(mixed_pdf, "layer")
    assert layer.text_source == "layer"
    assert "turbines" in layer.text and "kangaroo" not in layer.text.lower()
    assert "kangaroo" in layer.ocr_text.lower()  # OCR kept aside
    assert all("kangaroo" not in c.text.lower() for c in layer.chunks)

    ocr = _page(mixed_pdf, "ocr")
    assert ocr.text_source == "ocr"
    assert ocr.text == ocr.ocr_text
    assert "kangaroo" in ocr.text.lower()
    assert ocr.layer_text.startswith("Layer sentence")  # still recorded, not used
    assert "".join(c.text for c in ocr.chunks).lower().count("kangaroo") >= 1


def test_page_text_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="page_text"):
        IngestConfig(page_text="both")  # type: ignore[arg-type]
