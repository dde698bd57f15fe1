"""Compact page storage: source files kept once and rendered on demand, old layout still read,
bounded image cache. Real PDFs, real LanceDB, real rendering."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pdfgen import RASTER_CAPTION, TEXT_FACT, make_image_document, make_mixed_pdf
from PIL import Image

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex
from mm_retriever.ranking.image_cache import ENV_LIMIT, ImageCache, default_limit
from mm_retriever.ranking.page_images import PageImages
from mm_retriever.store import FIGURES, PAGES, SCHEMA_VERSION, SOURCES

V1_INDEX = Path(__file__).parent / "data" / "index_v1"  # written by main f4f2974 (schema 1)


def _config(image_store: str, dpi: int = 144) -> IndexConfig:
    ingest = IngestConfig(ocr="never", dpi=dpi, image_store=image_store)
    return IndexConfig(ingest=ingest, legs=[LegSpec(name="bm25")])


def _build(tmp_path: Path, image_store: str, *files: Path) -> MultimodalIndex:
    index = MultimodalIndex.create(tmp_path / f"index-{image_store}", _config(image_store))
    assert index.add(list(files)).ok
    return index


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _assert_same_image(a: bytes, b: bytes, tolerance: float = 1.0) -> None:
    pa, pb = _pixels(a), _pixels(b)
    assert pa.shape == pb.shape
    assert np.abs(pa - pb).mean() <= tolerance


@pytest.fixture(scope="module")
def two_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The mixed PDF (text, table, raster and vector charts, scan) and a PNG, indexed both ways."""
    tmp = tmp_path_factory.mktemp("layouts")
    pdf = make_mixed_pdf(tmp / "mixed.pdf").path
    png = make_image_document(tmp / "memo.png")
    return {
        "pdf": pdf,
        "png": png,
        "encoded": _build(tmp, "encoded", pdf, png),
        "source": _build(tmp, "source", pdf, png),
    }


def _doc_id(index: MultimodalIndex, name: str) -> str:
    return next(d["doc_id"] for d in index.documents() if d["source"].endswith(name))


def test_source_layout_returns_the_same_pages_and_crops(two_layouts: dict) -> None:
    encoded, source = two_layouts["encoded"], two_layouts["source"]
    doc = _doc_id(source, "mixed.pdf")
    assert doc == _doc_id(encoded, "mixed.pdf")
    stored = source.store.query(SOURCES).to_pylist()
    pdf_row = next(r for r in stored if r["doc_id"] == doc)
    assert pdf_row["data"] == two_layouts["pdf"].read_bytes()  # the file, once
    assert (pdf_row["mime"], pdf_row["dpi"]) == ("application/pdf", 144)
    assert encoded.store.count(SOURCES) == 0
    rows = source.store.query(PAGES, columns=["image", "layer_text", "ocr_text"]).to_pylist()
    assert all(r["image"] is None and r["layer_text"] == r["ocr_text"] == "" for r in rows)
    for i in range(5):
        want, got = encoded.page_images.page(doc, i), source.page_images.page(doc, i)
        assert want is not None and got is not None
        assert got[1] == want[1] == "image/jpeg"
        assert Image.open(io.BytesIO(got[0])).width == 1224  # 612 pt at 144 dpi
        _assert_same_image(want[0], got[0])
        assert got[0] == want[0]  # same render, same encoder: the very same bytes
    assert source.page_images.page(doc, 5) is None
    crops = {}
    for index in (encoded, source):
        figs = index.store.query(FIGURES, f"doc_id = '{doc}'").to_pylist()
        index.page_images.fill_figures(figs)
        crops[id(index)] = {(f["page_index"], f["figure_index"]): f["image"] for f in figs}
    want, got = crops[id(encoded)], crops[id(source)]
    assert set(got) == set(want) and len(got) >= 2  # the raster and the vector chart
    for key, data in got.items():
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        _assert_same_image(want[key], data)


def test_retrieved_pages_are_the_same_in_both_layouts(two_layouts: dict) -> None:
    pages = {}
    for name in ("encoded", "source"):
        retriever = two_layouts[name].retriever()
        pages[name] = retriever.retrieve(TEXT_FACT, k=2) + retriever.retrieve(RASTER_CAPTION, k=1)
    for want, got in zip(pages["encoded"], pages["source"], strict=True):
        assert (got.doc_id, got.page_index, got.text) == (want.doc_id, want.page_index, want.text)
        assert got.image_bytes == want.image_bytes and got.image_mime == want.image_mime
        assert got.image().size == want.image().size and got.image().width == 1224
        assert got.image_path and Path(got.image_path).read_bytes() == got.image_bytes
    # without images: nothing rendered, nothing written
    bare = two_layouts["source"].retriever(include_images=False, write_images=False)
    assert all(p.image_bytes is None for p in bare.retrieve(TEXT_FACT, k=2))


def test_image_input_keeps_its_own_bytes(two_layouts: dict) -> None:
    encoded, source = two_layouts["encoded"], two_layouts["source"]
    doc = _doc_id(source, "memo.png")
    (row,) = source.store.query(SOURCES, f"doc_id = '{doc}'").to_pylist()
    assert row["data"] == two_layouts["png"].read_bytes() and row["mime"] == "image/png"
    got, want = source.page_images.page(doc, 0), encoded.page_images.page(doc, 0)
    assert got is not None and want is not None and got[0] == want[0]
    assert Image.open(io.BytesIO(got[0])).size == (800, 360)
    assert source.page_images.page(doc, 1) is None


def test_source_layout_takes_less_disk(two_layouts: dict) -> None:
    encoded = two_layouts["encoded"].bytes_per_table()
    source = two_layouts["source"].bytes_per_table()
    images = encoded[PAGES] + encoded[FIGURES]
    kept = source[PAGES] + source[FIGURES] + source[SOURCES]
    assert kept < images / 3
    assert sum(source.values()) < sum(encoded.values())


def test_delete_removes_the_source(tmp_path: Path) -> None:
    pdf = make_mixed_pdf(tmp_path / "mixed.pdf").path
    index = _build(tmp_path, "source", pdf)
    doc = _doc_id(index, "mixed.pdf")
    assert index.store.count(SOURCES) == 1
    index.delete(doc)
    assert index.store.count(SOURCES) == 0 and index.check() == []
    assert index.page_images.page(doc, 0) is None


def test_schema_1_index_opens_reads_and_keeps_its_layout(tmp_path: Path) -> None:
    """An index written by mm-retriever before schema 2 (tests/data/index_v1, see its README)."""
    path = tmp_path / "v1"
    shutil.copytree(V1_INDEX, path)
    index = MultimodalIndex.open(path)
    assert index.manifest()["schema_version"] == 1 < SCHEMA_VERSION
    assert SOURCES not in index.store.table_names()
    pdf_doc = _doc_id(index, "mixed.pdf")
    retriever = index.retriever()
    (page,) = retriever.retrieve(TEXT_FACT, k=1)
    assert (page.doc_id, page.page_index) == (pdf_doc, 0)
    assert page.image_mime == "image/jpeg" and page.image().width == 612  # 72 dpi
    assert Path(page.image_path).read_bytes() == page.image_bytes
    found = index.page_images.page(pdf_doc, 2)
    assert found is not None and Image.open(io.BytesIO(found[0])).width == 612
    figs = index.store.query(FIGURES, f"doc_id = '{pdf_doc}'").to_pylist()
    index.page_images.fill_figures(figs)  # stored crops are kept as they are
    assert figs and all(f["image"][:4] == b"\x89PNG" for f in figs)
    png = _doc_id(index, "memo.png")
    assert index.page_images.page(png, 0) is not None
    # a write keeps the old layout, so older versions can still read the index
    pdf = make_image_document(tmp_path / "other.png", lines=["Kestrel Bay ferries: 77 trips"])
    assert index.add([pdf]).ok
    other = _doc_id(index, "other.png")
    assert SOURCES not in index.store.table_names()
    assert index.manifest()["schema_version"] == 1
    (row,) = index.store.query(PAGES, f"doc_id = '{other}'", ["image"]).to_pylist()
    assert row["image"]
    assert index.check() == []
    index.delete(pdf_doc)
    assert MultimodalIndex.open(path).num_pages() == 2


def test_image_cache_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", max_bytes=2500)
    a, b = cache.put("d/a.jpg", b"a" * 1000), cache.put("d/b.jpg", b"b" * 1000)
    assert a is not None and b is not None
    os.utime(a, (1_000, 1_000))
    os.utime(b, (2_000, 2_000))
    assert cache.get("d/a.jpg") == a  # a used again: now the newest
    c = cache.put("e/c.jpg", b"c" * 1000)  # 3000 > 2500: the least recently used (b) goes
    assert c is not None and a.exists() and c.exists() and not b.exists()
    assert cache.size() <= 2500
    assert cache.get("d/b.jpg") is None
    assert cache.put("big.jpg", b"x" * 3000) is None  # larger than the whole cache
    cache.max_bytes = 1000
    assert cache.evict() <= 1000 and c.exists() and not a.exists()


def test_image_cache_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_LIMIT, "2.5")
    assert default_limit() == int(2.5 * (1 << 20))
    monkeypatch.setenv(ENV_LIMIT, "lots")
    with pytest.raises(ValueError, match=ENV_LIMIT):
        default_limit()
    monkeypatch.delenv(ENV_LIMIT)
    assert default_limit() == 1024 << 20


def test_retriever_image_folder_stays_bounded(two_layouts: dict) -> None:
    index = two_layouts["source"]
    cache = index.image_cache
    assert cache is not None
    shutil.rmtree(cache.root, ignore_errors=True)
    old, cache.max_bytes = cache.max_bytes, 0
    try:
        one = index.page_images.page(_doc_id(index, "mixed.pdf"), 0)
        assert one is not None
        cache.max_bytes = int(len(one[0]) * 1.5)  # room for about one page
        cache._used = None
        retriever = index.retriever()
        paths = [p.image_path for q in (TEXT_FACT, RASTER_CAPTION) for p in retriever.retrieve(q)]
        assert all(p is None or Path(p).parent.parent == cache.root for p in paths)
        assert 0 < cache.size() <= cache.max_bytes
        last = retriever.retrieve(RASTER_CAPTION, k=1)[0]
        assert last.image_path and Path(last.image_path).exists()
    finally:
        cache.max_bytes = old


def test_open_sources_are_bounded(two_layouts: dict) -> None:
    index = two_layouts["source"]
    pdf, png = _doc_id(index, "mixed.pdf"), _doc_id(index, "memo.png")
    images = PageImages(index.store, max_source_bytes=1)  # keeps only the latest source open
    assert images.page(pdf, 1) is not None and images.open_sources() == [pdf]
    assert images.page(png, 0) is not None and images.open_sources() == [png]
    roomy = PageImages(index.store)
    assert roomy.page(pdf, 0) is not None and roomy.page(png, 0) is not None
    assert roomy.open_sources() == [pdf, png]
    roomy.clear()
    assert roomy.open_sources() == []
