"""Ingestion on generated PDFs: text layer, tables, figures, chunks, ids, bad files, renderers."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import pdfgen
import pytest
from PIL import Image, ImageChops, ImageStat

from mm_retriever.config import IngestConfig
from mm_retriever.errors import IngestError
from mm_retriever.ingest import DocumentReader, document_id, encode_image, iter_files
from mm_retriever.types import Page

NO_OCR = IngestConfig(ocr="never")


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> pdfgen.MixedPDF:
    return pdfgen.make_mixed_pdf(tmp_path_factory.mktemp("mixed") / "mixed.pdf")


@pytest.fixture(scope="module")
def pages(mixed) -> list[Page]:
    """All pages of the mixed PDF read without OCR (OCR has its own tests)."""
    with DocumentReader(mixed.path, NO_OCR) as reader:
        return [p for batch in reader.pages(batch_size=2) for p in batch]


def test_text_layer_page(pages):
    page = pages[0]
    assert pdfgen.TEXT_FACT in page.text
    assert page.text_source == "layer"
    assert page.layer_text == page.text
    assert page.ocr_text == ""
    assert page.text.startswith("Observatory notes")  # reading order: heading first
    assert (page.width, page.height) == pdfgen.LETTER
    assert page.image.mode == "RGB"
    assert page.image.size == (612 * 2, 792 * 2)  # default 144 dpi


def test_table_page_text_and_no_figure(pages):
    page = pages[1]
    assert f"Table 1: {pdfgen.TABLE_FACT}" in page.text
    for row in pdfgen.TABLE_ROWS:
        for cell in row:
            assert cell in page.text
    assert page.figures == []  # a ruled table grid is not a chart


def test_raster_figure_bbox_caption_and_crop(pages, mixed):
    spec = mixed.figures[0]
    figs = pages[spec.page_index].figures
    assert len(figs) == 1
    fig = figs[0]
    assert fig.kind == "raster"
    assert fig.bbox == pytest.approx(spec.bbox, abs=2)
    assert fig.caption == pdfgen.RASTER_CAPTION
    assert fig.inside_text == ""  # pixels only: no text layer inside
    w, h = (spec.bbox[2] - spec.bbox[0]) * 2, (spec.bbox[3] - spec.bbox[1]) * 2
    assert fig.image.size[0] == pytest.approx(w, abs=20)
    assert fig.image.size[1] == pytest.approx(h, abs=20)
    # the crop shows the chart's blue bars
    colors = fig.image.getcolors(maxcolors=1 << 20)
    assert any(c[1] == (40, 90, 170) and c[0] > 1000 for c in colors)


def test_vector_figure_caption_and_inside_text(pages, mixed):
    spec = mixed.figures[1]
    figs = pages[spec.page_index].figures
    assert len(figs) == 1
    fig = figs[0]
    assert fig.kind == "vector"
    assert iou(fig.bbox, spec.bbox) > 0.8
    assert fig.caption == pdfgen.VECTOR_CAPTION
    for word in [*pdfgen.VECTOR_LABELS, pdfgen.VECTOR_AXIS_TITLE, "42", "18"]:
        assert word in fig.inside_text
    assert "Figure 2" not in fig.inside_text
    assert "Tarragant Motors sells" not in fig.inside_text  # body text stays out
    assert fig.text.startswith(pdfgen.VECTOR_CAPTION)


def test_scanned_page_without_ocr_is_empty(pages, mixed):
    page = pages[mixed.scan_page]
    assert (page.text, page.text_source, page.chunks) == ("", "none", [])
    assert (page.width, page.height) == pdfgen.SCAN_SIZE
    assert page.figures == []  # a full-page scan is the page, not a figure


def test_chunks_lie_on_their_page(pages):
    for page in pages:
        assert [c.chunk_index for c in page.chunks] == list(range(len(page.chunks)))
        for chunk in page.chunks:
            x0, y0, x1, y1 = chunk.bbox
            assert 0 <= x0 < x1 <= page.width and 0 <= y0 < y1 <= page.height
            assert chunk.text and len(chunk.text) <= NO_OCR.chunk_size
    assert any(pdfgen.TEXT_FACT in c.text for c in pages[0].chunks)


def test_long_page_chunks_overlap_and_cover_the_text(tmp_path):
    sentences = [f"Sentence number {i} talks about topic {i * 7}." for i in range(60)]
    path = pdfgen.make_sample_pdf(tmp_path / "long.pdf", {0: " ".join(sentences)})
    cfg = IngestConfig(ocr="never", chunk_size=300, chunk_overlap=60)
    with DocumentReader(path, cfg) as reader:
        page = reader.page(0)
    chunks = page.chunks
    assert len(chunks) >= 6
    assert all(len(c.text) <= 300 for c in chunks)
    joined = " ".join(c.text for c in chunks)
    for s in sentences:
        assert s.split()[2] in joined  # every sentence number appears
    # consecutive pieces of the long paragraph share some words (overlap)
    firsts = [c.text for c in chunks[:3]]
    assert set(firsts[0].split()[-5:]) & set(firsts[1].split()[:15])
    for c in chunks:
        assert c.bbox[0] >= 0 and c.bbox[3] <= page.height


def test_pages_come_in_batches(mixed):
    with DocumentReader(mixed.path, NO_OCR) as reader:
        batches = list(reader.pages(batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [p.page_index for b in batches for p in b] == [0, 1, 2, 3, 4]
    assert {p.doc_id for b in batches for p in b} == {document_id(mixed.path)}


def test_document_header(mixed, tmp_path):
    with DocumentReader(mixed.path, NO_OCR) as reader:
        doc = reader.document()
        assert reader.n_pages == 5
    assert doc.pages == []
    assert doc.title == mixed.title
    assert doc.source == str(mixed.path.resolve())
    assert doc.metadata["n_pages"] == 5
    assert doc.metadata["media_type"] == "application/pdf"
    # no title in the metadata: the file stem
    untitled = tmp_path / "quarterly-notes.pdf"
    shutil.copy(pdfgen.make_sample_pdf(tmp_path / "x.pdf", ["a fact"], title=""), untitled)
    with DocumentReader(untitled, NO_OCR) as reader:
        assert reader.title == "quarterly-notes"


def test_sample_pdf_puts_facts_on_the_asked_pages(tmp_path):
    facts = {1: "The vault code of Castle Imber is 7741.", 3: "Ferns grow on Mount Oolo."}
    path = pdfgen.make_sample_pdf(tmp_path / "facts.pdf", facts, n_pages=5)
    with DocumentReader(path, IngestConfig()) as reader:  # default ocr=auto: no OCR needed
        pages = [p for batch in reader.pages() for p in batch]
        assert reader.counts["ocr_pages"] == 0
    assert len(pages) == 5
    for i, page in enumerate(pages):
        for j, fact in facts.items():
            assert (fact in page.text) == (i == j)


def test_document_id_is_content_based(mixed, tmp_path):
    expected = hashlib.sha256(mixed.path.read_bytes()).hexdigest()[:16]
    assert document_id(mixed.path) == expected
    copy = tmp_path / "renamed copy.pdf"
    shutil.copy(mixed.path, copy)
    assert document_id(copy) == expected
    assert DocumentReader(copy, NO_OCR).doc_id == expected
    other = pdfgen.make_sample_pdf(tmp_path / "other.pdf", ["another fact"])
    assert document_id(other) != expected
    # generated files are byte-stable, so their ids are too
    again = pdfgen.make_mixed_pdf(tmp_path / "again.pdf")
    assert document_id(again.path) == expected


def test_iter_files_expands_folders(tmp_path):
    files = pdfgen.make_test_files(tmp_path / "docs")
    sub = tmp_path / "docs" / "sub"
    sub.mkdir()
    nested = pdfgen.make_sample_pdf(sub / "a.pdf", ["nested"])
    hidden = tmp_path / "docs" / ".hidden"
    hidden.mkdir()
    pdfgen.make_sample_pdf(hidden / "h.pdf", ["hidden"])
    (tmp_path / "docs" / "UPPER.PDF").write_bytes(files["sample"].read_bytes())
    found = iter_files([tmp_path / "docs"])
    names = [p.relative_to(tmp_path / "docs").as_posix() for p in found]
    assert names == sorted(names)
    assert "sub/a.pdf" in names and "UPPER.PDF" in names and "scan.png" in names
    assert "notes.txt" not in names and ".hidden/h.pdf" not in names
    # files named explicitly are kept (even unsupported: reading them reports why); no duplicates
    explicit = iter_files([files["unsupported"], nested, tmp_path / "docs" / "sub"])
    assert explicit == [files["unsupported"], nested]


BAD_FILES = {
    "corrupt": "not a readable PDF",
    "fake": "not a readable PDF",
    "encrypted": "encrypted; decrypt it first",
    "empty": "has no pages",
    "unsupported": "unsupported file type '.txt'",
}


@pytest.fixture(scope="module")
def test_files(tmp_path_factory) -> dict[str, Path]:
    return pdfgen.make_test_files(tmp_path_factory.mktemp("files"))


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_raise_clear_errors(kind, test_files):
    files = test_files
    with pytest.raises(IngestError) as err:
        DocumentReader(files[kind], NO_OCR)
    message = str(err.value)
    assert BAD_FILES[kind] in message
    assert message.startswith(str(files[kind]))
    assert "\n" not in message
    assert err.value.path == str(files[kind])


def test_missing_and_broken_image_files(tmp_path):
    with pytest.raises(IngestError, match="file not found"):
        DocumentReader(tmp_path / "nope.pdf", NO_OCR)
    fake_png = tmp_path / "fake.png"
    fake_png.write_text("not an image")
    with pytest.raises(IngestError, match="not a readable image"):
        DocumentReader(fake_png, NO_OCR)
    with pytest.raises(IngestError, match="is a folder"):
        DocumentReader(tmp_path, NO_OCR)


@pytest.mark.parametrize("name", ["scan.png", "scan.jpg"])
def test_image_file_is_a_one_page_document(name, tmp_path):
    path = pdfgen.make_image_document(tmp_path / name)
    with DocumentReader(path, NO_OCR) as reader:
        assert reader.n_pages == 1
        assert reader.title == "scan"
        media = "image/png" if name.endswith("png") else "image/jpeg"
        assert reader.metadata["media_type"] == media
        batches = list(reader.pages())
    assert len(batches) == 1 and len(batches[0]) == 1
    page = batches[0][0]
    assert (page.width, page.height) == (800.0, 360.0)  # pixels as points (72 dpi)
    assert page.image.size == (800, 360)
    assert page.text_source == "none"
    assert [f.kind for f in page.figures] == ["page"]
    assert page.figures[0].bbox == (0.0, 0.0, 800.0, 360.0)


@pytest.mark.skipif(
    shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None,
    reason="poppler (pdftoppm, pdfinfo) is not installed: apt-get install poppler-utils",
)
def test_pdf2image_renders_the_same_size_as_pymupdf(mixed):
    cfg = IngestConfig(ocr="never", dpi=100, figures=False)
    with DocumentReader(mixed.path, cfg) as reader:
        reference = [reader.page(0).image, reader.page(3).image]
    cfg2 = cfg.model_copy(update={"renderer": "pdf2image"})
    with DocumentReader(mixed.path, cfg2) as reader:
        pages = [p for batch in reader.pages(batch_size=3) for p in batch]
    assert [p.image.size for p in pages] == [(850, 1100)] * 4 + [(850, 417)]
    for ref, page in zip(reference, [pages[0], pages[3]], strict=True):
        assert page.image.size == ref.size and page.image.mode == "RGB"
        diff = ImageStat.Stat(ImageChops.difference(ref, page.image).convert("L")).mean[0]
        assert diff < 8  # same page, two rasterisers: near-identical pixels
    assert pdfgen.TEXT_FACT in pages[0].text  # text still comes from the PDF


def test_encode_image_round_trips():
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    jpeg = encode_image(image)
    png = encode_image(image, fmt="png")
    assert jpeg[:3] == b"\xff\xd8\xff" and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(jpeg)).size == (40, 30)
    assert Image.open(io.BytesIO(png)).getpixel((5, 5)) == (200, 10, 10)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert Image.open(io.BytesIO(encode_image(rgba, "jpeg", quality=50))).mode == "RGB"
    with pytest.raises(ValueError, match="unsupported image format"):
        encode_image(image, fmt="gif")


def test_reader_closes_and_reports_out_of_range(mixed):
    reader = DocumentReader(mixed.path, NO_OCR)
    with pytest.raises(IndexError):
        reader.page(5)
    reader.close()
    reader.close()  # idempotent
    assert isinstance(Path(reader.source), Path)
