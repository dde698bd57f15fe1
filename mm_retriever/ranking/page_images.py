"""Page images and figure crops as users get them back, whichever way the index stores them.

Schema 1 (and ``IngestConfig.image_store="encoded"``) stores each page's encoded image in
``pages.image`` and each figure's PNG crop in ``figures.image``: those bytes are returned as
they are. Schema 2 keeps each document's source file once (table ``sources``) and renders here,
on demand: the page at the dpi ingestion rendered it, encoded with the format and quality
ingestion used (so the bytes equal what an ``encoded`` index stores), and figure crops cut from
that render by their bbox exactly as ingestion cut them. Open source documents and recent
renders stay in small in-process LRU caches; reading never writes to the index.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image

from mm_retriever.store import PAGES, SOURCES

if TYPE_CHECKING:
    import pymupdf

    from mm_retriever.store import LanceDBStore

MIME = {"jpeg": "image/jpeg", "png": "image/png"}


@dataclass
class _Source:
    """An opened source file and how its pages were rendered at ingest time."""

    dpi: int
    image_format: str
    image_quality: int
    size: int = 0  # bytes of the source file held in memory
    pdf: pymupdf.Document | None = None
    image: Image.Image | None = None

    @property
    def mime(self) -> str:
        return MIME.get(self.image_format, "image/jpeg")


class PageImages:
    """Renders pages and figure crops of schema-2 documents from their ``sources`` row.

    ``max_documents`` / ``max_source_bytes``: source files kept open (each holds its bytes in
    memory; the most recent one always stays); ``max_bytes``: encoded page images kept in
    memory. Thread-safe (one render at a time:
    MuPDF documents are not thread-safe).
    """

    def __init__(
        self,
        store: LanceDBStore,
        *,
        max_documents: int = 4,
        max_source_bytes: int = 256 << 20,
        max_bytes: int = 32 << 20,
    ) -> None:
        self.store = store
        self.max_documents = max_documents
        self.max_source_bytes = max_source_bytes
        self.max_bytes = max_bytes
        self._sources: OrderedDict[str, _Source | None] = OrderedDict()
        self._encoded: OrderedDict[tuple[str, int], tuple[bytes, str]] = OrderedDict()
        self._encoded_bytes = 0
        self._last: tuple[tuple[str, int], Image.Image, tuple[float, float]] | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ public
    def has_source(self, doc_id: str) -> bool:
        """Whether ``doc_id`` is stored as its source file (schema 2)."""
        with self._lock:
            return self._source(doc_id) is not None

    def page(self, doc_id: str, page_index: int) -> tuple[bytes, str] | None:
        """The encoded page image and its mime type: stored bytes, else rendered from the
        source; None when the page has neither (or does not exist)."""
        key = {"doc_id": doc_id, "page_index": int(page_index)}
        rows = self.store.rows_matching(PAGES, key, ["image", "image_mime"], limit=1)
        if not rows:
            return None
        if rows[0]["image"]:
            return rows[0]["image"], rows[0]["image_mime"] or "image/jpeg"
        return self.render_encoded(doc_id, page_index)

    def render_encoded(self, doc_id: str, page_index: int) -> tuple[bytes, str] | None:
        """The page rendered from its source and encoded as at ingest (None: no source)."""
        from mm_retriever.ingest import encode_image

        key = (doc_id, int(page_index))
        with self._lock:
            hit = self._encoded.get(key)
            if hit is not None:
                self._encoded.move_to_end(key)
                return hit
            src = self._source(doc_id)
            rendered = self._render(doc_id, page_index)
            if src is None or rendered is None:
                return None
            data = encode_image(rendered[0], src.image_format, src.image_quality)
            self._remember(key, (data, src.mime))
            return data, src.mime

    def render(self, doc_id: str, page_index: int) -> Image.Image | None:
        """The page as ingestion rendered it (RGB, at the ingest dpi); None: no source."""
        with self._lock:
            rendered = self._render(doc_id, page_index)
            return None if rendered is None else rendered[0].copy()

    def page_image(self, doc_id: str, page_index: int) -> Image.Image | None:
        """The page as a PIL image: the render when the source is kept, else the stored bytes."""
        image = self.render(doc_id, page_index)
        if image is not None:
            return image
        found = self.page(doc_id, page_index)
        return None if found is None else Image.open(io.BytesIO(found[0])).convert("RGB")

    def words(self, doc_id: str, page_index: int) -> list[tuple[Any, ...]] | None:
        """PyMuPDF's words (``get_text("words", sort=True)``) of a page of a stored PDF source;
        None when the document has no stored PDF or no such page."""
        with self._lock:
            src = self._source(doc_id)
            if src is None or src.pdf is None or not 0 <= page_index < src.pdf.page_count:
                return None
            return src.pdf.load_page(int(page_index)).get_text("words", sort=True)

    def fill_figures(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set ``image`` (PNG) of ``figures`` rows that have none, cut from the page render.

        Rows need ``doc_id``, ``page_index`` and ``bbox``; rows of documents without a source
        keep ``image`` None.
        """
        from mm_retriever.ingest import encode_image
        from mm_retriever.ingest.figures import crop

        todo = sorted(
            (r for r in rows if not r.get("image")), key=lambda r: (r["doc_id"], r["page_index"])
        )
        with self._lock:
            for r in todo:
                rendered = self._render(r["doc_id"], r["page_index"])
                if rendered is not None:
                    image, size = rendered
                    r["image"] = encode_image(crop(image, tuple(r["bbox"]), size), "png")

    def clear(self) -> None:
        """Close the open sources and drop the cached renders."""
        with self._lock:
            for src in self._sources.values():
                if src is not None and src.pdf is not None:
                    src.pdf.close()
            self._sources.clear()
            self._encoded.clear()
            self._encoded_bytes = 0
            self._last = None

    # ----------------------------------------------------------------- helpers
    def _source(self, doc_id: str) -> _Source | None:
        if doc_id in self._sources:
            self._sources.move_to_end(doc_id)
            return self._sources[doc_id]
        rows = self.store.rows_matching(SOURCES, {"doc_id": doc_id}, limit=1)
        src = _open(rows[0]) if rows else None
        self._sources[doc_id] = src
        while len(self._sources) > 1 and (
            len(self._sources) > self.max_documents
            or sum(v.size for v in self._sources.values() if v) > self.max_source_bytes
        ):
            _, old = self._sources.popitem(last=False)
            if old is not None and old.pdf is not None:
                old.pdf.close()
        return src

    def open_sources(self) -> list[str]:
        """doc_ids whose source is open (least recently used first)."""
        with self._lock:
            return [d for d, src in self._sources.items() if src is not None]

    def _render(
        self, doc_id: str, page_index: int
    ) -> tuple[Image.Image, tuple[float, float]] | None:
        """(page render, page size in points), the last one reused."""
        from mm_retriever.ingest.render import render_page

        key = (doc_id, int(page_index))
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        src = self._source(doc_id)
        if src is None:
            return None
        if src.pdf is not None:
            if not 0 <= page_index < src.pdf.page_count:
                return None
            page = src.pdf.load_page(int(page_index))
            image = render_page(page, src.dpi)
            size = (float(page.rect.width), float(page.rect.height))
        elif src.image is not None and page_index == 0:
            image, size = src.image, (float(src.image.width), float(src.image.height))
        else:
            return None
        self._last = (key, image, size)
        return image, size

    def _remember(self, key: tuple[str, int], value: tuple[bytes, str]) -> None:
        self._encoded[key] = value
        self._encoded_bytes += len(value[0])
        while self._encoded and self._encoded_bytes > self.max_bytes:
            _, (data, _) = self._encoded.popitem(last=False)
            self._encoded_bytes -= len(data)


def _open(row: dict[str, Any]) -> _Source:
    """Open a ``sources`` row: a PDF with PyMuPDF, an image with PIL (as ingestion did)."""
    import pymupdf

    src = _Source(
        dpi=int(row["dpi"]),
        image_format=row["image_format"] or "jpeg",
        image_quality=int(row["image_quality"] or 85),
        size=len(row["data"]),
    )
    if row["mime"] == "application/pdf":
        src.pdf = pymupdf.open(stream=row["data"], filetype="pdf")
    else:
        with Image.open(io.BytesIO(row["data"])) as im:
            im.load()
            src.image = im.convert("RGB")
    return src
