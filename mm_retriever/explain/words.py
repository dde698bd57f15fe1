"""Page data and word geometry: the page row and image, words from the text layer or OCR."""

from __future__ import annotations

import functools
import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from mm_retriever.explain.model import PageNotFoundError, Word
from mm_retriever.store import PAGES
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause
from mm_retriever.types import BBox

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ page data


def _page_row(index: MultimodalIndex, doc_id: str, page_index: int) -> dict[str, Any]:
    where = where_clause({"doc_id": doc_id, "page_index": int(page_index)}, PAGE_COLUMNS)
    columns = ["doc_id", "page_index", "width", "height", "text", "text_source", "image"]
    rows = index.store.query(PAGES, where, columns).to_pylist()
    if not rows or not index.store.has_document(doc_id):
        raise PageNotFoundError(f"no page {page_index} of document '{doc_id}' in this index")
    return rows[0]


def _image(index: MultimodalIndex, row: dict[str, Any]) -> Image.Image:
    """The page image as users get it: stored bytes, or rendered from the kept source file."""
    if not row.get("image"):
        found = index.page_images.render_encoded(row["doc_id"], row["page_index"])
        row["image"] = found[0] if found is not None else None
    if not row.get("image"):
        raise PageNotFoundError(f"page {row['page_index']} of '{row['doc_id']}' has no image")
    return Image.open(io.BytesIO(row["image"])).convert("RGB")


# ------------------------------------------------------------------ words


def page_words(
    index: MultimodalIndex, doc_id: str, page_index: int, row: dict[str, Any] | None = None
) -> tuple[list[Word], str]:
    """The page's words with boxes (points) and where they came from."""
    row = row or _page_row(index, doc_id, page_index)
    words: list[Word] = []
    sources = []
    layer = _stored_words(index, doc_id, page_index)  # the index's copy of the file
    if layer is None and (source := _document_source(index, doc_id)):
        layer = _layer_words(source, doc_id, page_index)  # the file on disk, if unchanged
    if layer:
        words += layer
        sources.append("layer")
    text_source = str(row.get("text_source") or "")
    if "ocr" in text_source or layer is None:
        ocr = _ocr_words(index, doc_id, page_index, row, run=layer is None)
        if ocr:
            words += ocr
            sources.append("ocr")
    return words, "+".join(sources) or "none"


def _document_source(index: MultimodalIndex, doc_id: str) -> str | None:
    for doc in index.documents():
        if doc["doc_id"] == doc_id:
            return doc["source"]
    return None


@functools.lru_cache(maxsize=256)
def _file_id(path: str, mtime_ns: int, size: int) -> str:
    from mm_retriever.ingest import document_id

    return document_id(path)


def _same_file(path: Path, doc_id: str) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return path.is_file() and _file_id(str(path), st.st_mtime_ns, st.st_size) == doc_id


def _stored_words(index: MultimodalIndex, doc_id: str, page_index: int) -> list[Word] | None:
    """Word boxes from the PDF the index keeps in its ``sources`` table (None: not kept)."""
    raw = index.page_images.words(doc_id, page_index)
    if raw is None:
        return None
    return [Word(w[4], (w[0], w[1], w[2], w[3]), ("L", w[5])) for w in raw]


def _layer_words(source: str, doc_id: str, page_index: int) -> list[Word] | None:
    """PyMuPDF word boxes of the source PDF's page; None when the file is gone or changed."""
    path = Path(source)
    if path.suffix.lower() != ".pdf" or not _same_file(path, doc_id):
        return None
    import pymupdf

    with pymupdf.open(path) as doc:
        if not 0 <= page_index < doc.page_count:
            return None
        raw = doc.load_page(page_index).get_text("words", sort=True)
    return [Word(w[4], (w[0], w[1], w[2], w[3]), ("L", w[5])) for w in raw]


def _ocr_words(
    index: MultimodalIndex, doc_id: str, page_index: int, row: dict[str, Any], run: bool
) -> list[Word]:
    """Words of the page's OCR lines: from the ingest's OCR cache, else (``run``) OCR now."""
    from mm_retriever.ingest.ocr import engine_cache_path, get_ocr_engine, load_cached, ocr_page

    cfg = index.config.ingest
    try:  # the ingest's engine, and the same reading the stored page image at its own dpi
        ingest_engine = get_ocr_engine(
            cfg.ocr_engine, cfg.ocr_dpi, cfg.ocr_max_side, cfg.ocr_runtime
        )
        engine = get_ocr_engine(cfg.ocr_engine, cfg.dpi, cfg.ocr_max_side, cfg.ocr_runtime)
    except Exception as exc:
        log.warning("no OCR word boxes for %s p.%d: %s", doc_id, page_index + 1, exc)
        return []
    ocr = None
    page_file = engine_cache_path(ingest_engine, doc_id, page_index)
    candidates = [  # the ingest's page OCR, its figure-region OCR, then an earlier explain's
        page_file,
        *sorted(page_file.parent.glob(f"{page_index:05d}-r*.json")),
        engine_cache_path(engine, doc_id, page_index),
    ]
    for path in candidates:
        ocr = load_cached(path)
        if ocr is not None:
            break
    has_image = row.get("image") or index.page_images.has_source(doc_id)
    if ocr is None and run and row.get("text") and has_image:
        try:  # OCR the stored page image at its own resolution (cached like the ingest's)
            image = _image(index, row)
            ocr, _ = ocr_page(
                engine, lambda: (image, float(row["width"]) / image.width), doc_id, page_index
            )
        except Exception as exc:
            log.warning("no OCR word boxes for %s p.%d: %s", doc_id, page_index + 1, exc)
            return []
    if ocr is None:
        return []
    return [w for i, line in enumerate(ocr.lines) for w in _split_line(line.text, line.bbox, i)]


def _split_line(text: str, bbox: BBox, line_no: int) -> list[Word]:
    """Word boxes of an OCR line, spread over its box in proportion to character offsets."""
    x0, y0, x1, y1 = bbox
    n = max(len(text), 1)
    step = (x1 - x0) / n
    return [
        Word(m.group(), (x0 + m.start() * step, y0, x0 + m.end() * step, y1), ("O", line_no))
        for m in re.finditer(r"\S+", text)
    ]
