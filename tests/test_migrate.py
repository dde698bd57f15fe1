"""Schema 1 -> 2 migration (``MultimodalIndex.migrate``, ``mm-retriever migrate``): real
schema-1 index written by an older mm-retriever, real PDFs, real LanceDB on disk."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from pdfgen import TEXT_FACT, make_image_document, make_mixed_pdf
from PIL import Image
from typer.testing import CliRunner

from mm_retriever.cli import app
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex
from mm_retriever.store import FIGURES, PAGES, SCHEMA_VERSION, SOURCES

V1_INDEX = Path(__file__).parent / "data" / "index_v1"  # written by main f4f2974 (schema 1)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _same_image(a: bytes, b: bytes, tolerance: float = 1.0) -> bool:
    pa, pb = _pixels(a), _pixels(b)
    return pa.shape == pb.shape and float(np.abs(pa - pb).mean()) <= tolerance


def _v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "v1"
    shutil.copytree(V1_INDEX, path)
    return path


@pytest.fixture
def source_folder(tmp_path: Path) -> Path:
    """The fixture's two documents, written again (pdfgen is deterministic: same doc ids)."""
    folder = tmp_path / "moved"
    folder.mkdir()
    make_mixed_pdf(folder / "mixed.pdf")
    make_image_document(folder / "memo.png")
    return folder


def _stored_images(index: MultimodalIndex) -> tuple[dict, dict]:
    pages = {
        (r["doc_id"], r["page_index"]): r["image"]
        for r in index.store.query(PAGES, columns=["doc_id", "page_index", "image"]).to_pylist()
    }
    figures = {
        (r["doc_id"], r["page_index"], r["figure_index"]): r["image"]
        for r in index.store.query(FIGURES).to_pylist()
    }
    return pages, figures


def test_schema_1_index_migrates_to_source_files(tmp_path: Path, source_folder: Path) -> None:
    path = _v1_copy(tmp_path)
    index = MultimodalIndex.open(path)
    pages_before, figures_before = _stored_images(index)
    assert all(pages_before.values()) and all(figures_before.values())
    assert index.store.count(PAGES, "layer_text != '' OR ocr_text != ''") > 0

    report = index.migrate([source_folder])
    assert (report.schema_before, report.schema_after) == (1, SCHEMA_VERSION)
    assert sorted(report.converted) == sorted(d["doc_id"] for d in index.documents())
    assert report.kept == {} and report.text_cleared > 0
    assert report.optimize is not None
    assert report.optimize.bytes_after < report.optimize.bytes_before

    index = MultimodalIndex.open(path)  # a fresh process's view
    manifest = index.manifest()
    assert manifest["schema_version"] == SCHEMA_VERSION and SOURCES in manifest["tables"]
    assert index.store.count(SOURCES) == 2
    assert index.store.count(PAGES, "image IS NOT NULL") == 0
    assert index.store.count(FIGURES, "image IS NOT NULL") == 0
    assert index.store.count(PAGES, "layer_text != '' OR ocr_text != ''") == 0
    for (doc, i), data in pages_before.items():  # the same pages, rendered from the source
        found = index.page_images.page(doc, i)
        assert found is not None and _same_image(found[0], data), (doc, i)
    rows = index.store.query(FIGURES).to_pylist()
    index.page_images.fill_figures(rows)
    for r in rows:
        key = (r["doc_id"], r["page_index"], r["figure_index"])
        assert _same_image(r["image"], figures_before[key]), key
    (page,) = index.retriever().retrieve(TEXT_FACT, k=1)
    assert page.page_index == 0 and page.image().width == 612
    assert index.check() == []
    # documents added from now on are kept as their source file too
    other = make_image_document(tmp_path / "other.png", lines=["Kestrel Bay ferries: 77 trips"])
    assert index.add([other]).ok
    assert index.store.count(SOURCES) == 3
    assert index.store.count(PAGES, "image IS NOT NULL") == 0
    # running it again finds nothing left to do
    again = index.migrate([source_folder])
    assert (again.schema_before, again.converted, again.kept, again.text_cleared) == (2, [], {}, 0)


def test_documents_without_their_source_keep_their_images(tmp_path: Path) -> None:
    """A schema-1 layout written now (encoded images, manifest at 1), its files then moved."""
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = make_mixed_pdf(folder / "mixed.pdf").path
    png = make_image_document(folder / "memo.png")
    ingest = IngestConfig(ocr="never", dpi=72, image_store="encoded")
    index = MultimodalIndex.create(
        tmp_path / "idx", IndexConfig(ingest=ingest, legs=[LegSpec(name="bm25")])
    )
    assert index.add([pdf, png]).ok
    index.store.write_manifest({"schema_version": 1})
    moved = tmp_path / "elsewhere"
    shutil.move(folder, moved)
    pages_before, _ = _stored_images(index)

    report = index.migrate()
    assert report.converted == [] and len(report.kept) == 2
    assert all("not found" in why for why in report.kept.values())
    assert index.manifest()["schema_version"] == SCHEMA_VERSION
    assert _stored_images(index)[0] == pages_before  # nothing lost
    assert index.check() == []

    # a stored first page that its source no longer renders like is left as stored
    png_doc = next(d["doc_id"] for d in index.documents() if d["source"].endswith("memo.png"))
    other = io.BytesIO()
    Image.new("RGB", Image.open(io.BytesIO(pages_before[(png_doc, 0)])).size, "red").save(
        other, "JPEG"
    )
    index.store.table(PAGES).update(
        where=f"doc_id = '{png_doc}'", values={"image": other.getvalue()}
    )
    report = index.migrate([moved])  # interrupted or partial: run it again with the folder
    assert len(report.converted) == 1 and list(report.kept) == [png_doc]
    assert "renders differently" in report.kept[png_doc]
    assert index.store.count(SOURCES) == 1  # the mismatching source row was taken back
    assert index.page_images.page(png_doc, 0)[0] == other.getvalue()
    assert index.store.count(PAGES, "image IS NOT NULL") == 1
    assert index.check() == []


def test_migrate_command(tmp_path: Path, source_folder: Path) -> None:
    path = _v1_copy(tmp_path)
    result = CliRunner().invoke(
        app, ["migrate", "--index", str(path), "--sources", str(source_folder)]
    )
    assert result.exit_code == 0, result.output
    assert f"schema 1 -> {SCHEMA_VERSION}: 2 document(s) now kept as their source file" in (
        result.output
    )
    assert "bytes on disk" in result.output
    assert MultimodalIndex.open(path).store.count(PAGES, "image IS NOT NULL") == 0


def test_a_run_interrupted_after_the_page_images_is_finished(
    tmp_path: Path, source_folder: Path
) -> None:
    """The source row is committed and the page images dropped, the crops not yet: the next
    run drops the crops and keeps the source (the first page was checked before)."""
    from mm_retriever.index.rows import source_rows
    from mm_retriever.ingest.files import document_id
    from mm_retriever.store.filters import quote_string
    from mm_retriever.store.schema import SOURCES_SCHEMA

    path = _v1_copy(tmp_path)
    index = MultimodalIndex.open(path)
    pdf = source_folder / "mixed.pdf"
    doc = document_id(pdf)
    _, figures_before = _stored_images(index)
    where = f"doc_id = {quote_string(doc)}"
    ingest = index.config.ingest
    rows = source_rows(doc, pdf, ingest.dpi, ingest.image_format, ingest.image_quality)
    index.store.add(SOURCES, rows, SOURCES_SCHEMA)
    index.store.table(PAGES).update(where=where, values_sql={"image": "NULL"})
    assert index.store.count(FIGURES, f"{where} AND image IS NOT NULL") > 0

    report = index.migrate()  # no folder given: the committed source row is what counts
    assert doc in report.converted
    assert index.store.count(SOURCES, where) == 1
    assert index.store.count(FIGURES, f"{where} AND image IS NOT NULL") == 0
    rows = index.store.query(FIGURES, where).to_pylist()
    index.page_images.fill_figures(rows)
    for r in rows:
        key = (r["doc_id"], r["page_index"], r["figure_index"])
        assert _same_image(r["image"], figures_before[key]), key
    assert index.check() == []
