"""OCR in ingestion: RapidOCR and tesseract on real rendered pages, the disk cache, merging."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pdfgen
import pytest
from PIL import Image

from mm_retriever.config import IngestConfig
from mm_retriever.ingest import DocumentReader, document_id, get_ocr_engine
from mm_retriever.ingest.merge import new_ocr_lines
from mm_retriever.ingest.ocr import (
    PageLine,
    engine_cache_path,
    openvino_precision,
    resolve_ocr_runtime,
)
from mm_retriever.ingest.text import TextLine

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng",
)

DET = IngestConfig().ocr_max_side  # the default detector size (rapidocr's cache folder)


def _cache_file(engine: str, doc: Path, page: int = 0) -> Path:
    """Where the default ingest settings cache ``engine``'s OCR of one page."""
    return engine_cache_path(get_ocr_engine(engine, 150, DET), document_id(doc), page)


@pytest.fixture(autouse=True)
def ocr_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty OCR cache (never the user's)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> Path:
    return pdfgen.make_scanned_pdf(tmp_path_factory.mktemp("scan") / "scanned.pdf")


def _read_scan(path: Path, engine: str, **options) -> tuple[DocumentReader, list]:
    reader = DocumentReader(path, IngestConfig(ocr="auto", ocr_engine=engine, **options))
    pages = [p for batch in reader.pages() for p in batch]
    reader.close()
    return reader, pages


@pytest.mark.parametrize("engine", ["rapidocr", pytest.param("tesseract", marks=needs_tesseract)])
def test_scanned_page_is_read_by_ocr(engine, scanned, ocr_cache):
    reader, pages = _read_scan(scanned, engine)
    page = pages[0]
    assert page.text_source == "ocr"
    assert page.layer_text == ""
    assert page.text == page.ocr_text
    words = page.text.lower()
    for word in ["pemberton", "lighthouse", "seventeen", "storms", "harbour"]:
        assert word in words, (engine, page.text)
    assert reader.counts == {"ocr_pages": 1, "ocr_cached": 0}
    # chunks come from OCR lines, with bboxes in PDF points on the page
    assert page.chunks and "Pemberton" in page.chunks[0].text
    x0, y0, x1, y1 = page.chunks[0].bbox
    assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
    # the cache file has the shared format, bboxes in points
    path = _cache_file(engine, scanned)
    folder = f"{engine}-150dpi" + ("-det960" if engine == "rapidocr" else "")
    if engine == "rapidocr" and resolve_ocr_runtime() == "openvino":
        folder += f"-ov-{openvino_precision()}"
    assert path.is_relative_to(ocr_cache / "ocr" / folder)
    data = json.loads(path.read_text())
    assert set(data) == {"text", "lines"}
    assert data["text"] == page.ocr_text
    fact_line = next(ln for ln in data["lines"] if "lighthouse" in ln["text"])
    assert set(fact_line) == {"text", "bbox", "conf"}
    assert 0 < fact_line["conf"] <= 1
    x0, y0, x1, y1 = fact_line["bbox"]
    # the fact line is drawn from x=72pt, its baseline near y=110pt, in 11pt type
    assert x0 == pytest.approx(72, abs=6) and 300 < x1 < 560
    assert 92 < y0 < y1 < 125 and y1 - y0 < 20


def test_ocr_never_leaves_the_scan_empty(scanned, ocr_cache):
    reader = DocumentReader(scanned, IngestConfig(ocr="never"))
    page = reader.page(0)
    assert (page.text, page.ocr_text, page.text_source) == ("", "", "none")
    assert reader.counts["ocr_pages"] == 0
    assert not ocr_cache.exists()


@needs_tesseract
def test_second_read_hits_the_cache(scanned):
    first, pages1 = _read_scan(scanned, "tesseract")
    second, pages2 = _read_scan(scanned, "tesseract")
    assert first.counts["ocr_cached"] == 0
    assert second.counts == {"ocr_pages": 1, "ocr_cached": 1}
    assert pages2[0].text == pages1[0].text
    assert [c.bbox for c in pages2[0].chunks] == [c.bbox for c in pages1[0].chunks]


def test_a_precomputed_cache_file_is_used(scanned):
    """The format written by other tools (e.g. a batch OCR job) is read as is."""
    path = _cache_file("rapidocr", scanned)
    path.parent.mkdir(parents=True)
    line = {"text": "Precomputed line about walruses", "bbox": [72, 50, 300, 62], "conf": 0.9}
    path.write_text(json.dumps({"text": line["text"], "lines": [line]}))
    reader, pages = _read_scan(scanned, "rapidocr")
    assert pages[0].text == "Precomputed line about walruses"
    assert pages[0].chunks[0].bbox == (72, 50, 300, 62)
    assert reader.counts == {"ocr_pages": 1, "ocr_cached": 1}


@needs_tesseract
def test_unreadable_cache_file_is_recomputed(scanned):
    path = _cache_file("tesseract", scanned)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    reader, pages = _read_scan(scanned, "tesseract")
    assert "lighthouse" in pages[0].text
    assert reader.counts["ocr_cached"] == 0
    assert json.loads(path.read_text())["text"] == pages[0].ocr_text


@needs_tesseract
def test_ocr_always_merges_with_the_layer_without_duplicates(tmp_path):
    path = pdfgen.make_sample_pdf(tmp_path / "fact.pdf", [pdfgen.TEXT_FACT])
    cfg = IngestConfig(ocr="always", ocr_engine="tesseract", ocr_dpi=100)
    with DocumentReader(path, cfg) as reader:
        page = reader.page(0)
    assert page.text_source == "layer+ocr"
    assert "Zorblax" in page.ocr_text  # OCR read the page ...
    assert page.text.count("Zorblax") == 1  # ... but the layer already had that line
    assert page.text.startswith(page.layer_text)


@needs_tesseract
def test_raster_chart_gets_ocr_in_auto_mode(tmp_path):
    """A chart embedded as an image has no text layer: auto OCR adds its labels."""
    mixed = pdfgen.make_mixed_pdf(tmp_path / "mixed.pdf")
    cfg = IngestConfig(ocr="auto", ocr_engine="tesseract")
    with DocumentReader(mixed.path, cfg) as reader:
        chart = reader.page(2)
        assert reader.counts["ocr_pages"] == 1
        vector = reader.page(3)  # labels in the text layer: no OCR needed
        assert reader.counts["ocr_pages"] == 1
    assert chart.text_source == "layer+ocr"
    assert vector.text_source == "layer"
    fig = chart.figures[0]
    assert fig.caption == pdfgen.RASTER_CAPTION
    assert "1990s" in fig.inside_text and "2020s" in fig.inside_text
    assert "1990s" in chart.text and "1990s" in chart.chunks[-1].text
    no_fig_ocr = cfg.model_copy(update={"ocr_figures": False})
    with DocumentReader(mixed.path, no_fig_ocr) as reader:
        assert reader.page(2).text_source == "layer"


def test_raster_chart_ocr_reads_only_the_figure(tmp_path, ocr_cache):
    """A page whose layer is fine is OCR'd for its raster chart alone: the chart's region is
    read (cached under its own name), its labels land in the page text with page-point boxes
    inside the figure, and the rest of the page is not OCR'd again."""
    mixed = pdfgen.make_mixed_pdf(tmp_path / "mixed.pdf")
    with DocumentReader(mixed.path, IngestConfig()) as reader:  # rapidocr, ocr=auto
        chart = reader.page(2)
        assert dict(reader.counts) == {"ocr_pages": 1, "ocr_regions": 1, "ocr_cached": 0}
    assert chart.text_source == "layer+ocr"
    for label in pdfgen.RASTER_LABELS:
        assert label in chart.ocr_text and label in chart.text
    fx0, fy0, fx1, fy1 = chart.figures[0].bbox
    ocr_lines = [c for c in chart.chunks if "1990s" in c.text]
    assert ocr_lines
    files = sorted((ocr_cache / "ocr").rglob("*.json"))
    assert [f.name[:7] for f in files] == ["00002-r"]
    data = json.loads(files[0].read_text())
    assert {ln["text"] for ln in data["lines"]} >= set(pdfgen.RASTER_LABELS)
    for ln in data["lines"]:  # page points, inside the chart's box
        x0, y0, x1, y1 = ln["bbox"]
        assert fx0 - 1 <= x0 < x1 <= fx1 + 1 and fy0 - 1 <= y0 < y1 <= fy1 + 1
    # the layer's caption is not read twice (OCR saw the chart only)
    assert pdfgen.RASTER_CAPTION.split(":")[0] not in chart.ocr_text
    with DocumentReader(mixed.path, IngestConfig()) as reader:
        again = reader.page(2)
        assert reader.counts["ocr_cached"] == 1
    assert again.text == chart.text
    whole = IngestConfig(ocr_figure_crops=False)
    with DocumentReader(mixed.path, whole) as reader:
        page = reader.page(2)
        assert dict(reader.counts) == {"ocr_pages": 1, "ocr_cached": 0}
    for label in pdfgen.RASTER_LABELS:
        assert label in page.text


@needs_tesseract
def test_image_document_is_read_by_ocr(tmp_path):
    path = pdfgen.make_image_document(tmp_path / "memo.png")
    with DocumentReader(path, IngestConfig(ocr_engine="tesseract")) as reader:
        page = reader.page(0)
    assert page.text_source == "ocr"
    assert "lighthouse" in page.text
    assert page.figures[0].kind == "page" and "lighthouse" in page.figures[0].inside_text
    for chunk in page.chunks:
        x0, y0, x1, y1 = chunk.bbox
        assert 0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 360


def test_both_ocr_runtimes_read_the_page_into_their_own_cache(scanned, ocr_cache):
    """OpenVINO and ONNX Runtime run the same models; their readings are cached apart."""
    assert resolve_ocr_runtime("auto") == "openvino"  # a core dependency on this platform
    texts, folders = {}, set()
    for runtime in ("openvino", "onnxruntime"):
        _, pages = _read_scan(scanned, "rapidocr", ocr_runtime=runtime)
        texts[runtime] = pages[0].text.lower()
        engine = get_ocr_engine("rapidocr", 150, DET, runtime)
        folders.add(engine_cache_path(engine, document_id(scanned), 0).parent.parent.name)
    for words in texts.values():
        assert "lighthouse" in words and "pemberton" in words, texts
    folder = "rapidocr-150dpi-det960"
    assert folders == {folder, f"{folder}-ov-{openvino_precision()}"}
    with pytest.raises(ValueError, match="unknown OCR runtime 'tensorrt'"):
        resolve_ocr_runtime("tensorrt")


@needs_tesseract
def test_engines_are_shared_and_named():
    assert get_ocr_engine("tesseract") is get_ocr_engine("tesseract", 150)
    assert get_ocr_engine("tesseract", 200).dpi == 200
    assert get_ocr_engine("rapidocr").name == "rapidocr"
    with pytest.raises(ValueError, match="unknown OCR engine 'easyocr'"):
        get_ocr_engine("easyocr")


@needs_tesseract
def test_engine_reads_pixels():
    image = pdfgen.text_image(["Quarterly report", "Net income rose sharply."], size_pt=(500, 260))
    result = get_ocr_engine("tesseract").read(image)
    assert "income" in result.text.lower()
    for line in result.lines:
        x0, y0, x1, y1 = line.bbox_px
        assert 0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height
    blank = get_ocr_engine("tesseract").read(Image.new("RGB", (200, 100), "white"))
    assert (blank.text, blank.lines) == ("", [])


def test_new_ocr_lines_keeps_only_what_the_layer_lacks():
    layer = [
        TextLine("Revenue grew 12% in 2023.", (72, 100, 300, 112)),
        TextLine("42", (500, 700, 510, 710)),  # a page number far from the chart
    ]
    ocr = [
        PageLine("Revenue grew 12% in 2O23.", (71, 99, 301, 113), 0.9),  # same line, one OCR slip
        PageLine("42", (150, 400, 160, 410), 0.9),  # a chart value: not in the layer there
        PageLine("North South", (150, 420, 220, 430), 0.9),
        PageLine("— ·", (10, 10, 20, 20), 0.5),  # no word characters
    ]
    assert [ln.text for ln in new_ocr_lines(ocr, layer)] == ["42", "North South"]


@pytest.mark.parametrize("mode", ["merge", "layer", "ocr"])
def test_page_text_modes(mode, tmp_path):
    """page_text: layer + new OCR lines (merge), the layer alone, or OCR alone.

    The OCR comes from a precomputed cache file, so this runs no OCR engine.
    """
    import pymupdf

    from mm_retriever.ingest.text import read_layer

    path = pdfgen.make_sample_pdf(tmp_path / "fact.pdf", [pdfgen.TEXT_FACT])
    with pymupdf.open(path) as doc:
        fact = next(ln for ln in read_layer(doc[0]).lines if "Zorblax" in ln.text)
    lines = [
        {"text": fact.text, "bbox": list(fact.bbox), "conf": 0.95},  # what the layer has
        {"text": "Zanzibar 77", "bbox": [300, 600, 380, 612], "conf": 0.9},  # what it lacks
    ]
    cache = _cache_file("rapidocr", path)
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"text": "\n".join(ln["text"] for ln in lines), "lines": lines}))
    cfg = IngestConfig(ocr="always", page_text=mode)
    with DocumentReader(path, cfg) as reader:
        page = reader.page(0)
        assert reader.counts == {"ocr_pages": 1, "ocr_cached": 1}
    assert page.ocr_text == f"{fact.text}\nZanzibar 77"
    assert pdfgen.TEXT_FACT in page.layer_text
    chunk_text = "\n".join(c.text for c in page.chunks)
    if mode == "merge":
        assert page.text_source == "layer+ocr"
        assert page.text == page.layer_text + "\nZanzibar 77"
        assert "Zanzibar 77" in chunk_text and chunk_text.count("Zorblax") == 1
    elif mode == "layer":
        assert page.text_source == "layer"
        assert page.text == page.layer_text
        assert "Zanzibar" not in chunk_text
    else:
        assert page.text_source == "ocr"
        assert page.text == page.ocr_text
        assert len(page.chunks) == 1  # both OCR lines, their union box
        union = (fact.bbox[0], fact.bbox[1], max(fact.bbox[2], 380), 612)
        assert page.chunks[0].bbox == pytest.approx(union, abs=0.01)
