"""DocumentReader: one file (PDF, PNG or JPEG) -> validated header + batches of pages."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pymupdf
from PIL import Image, UnidentifiedImageError

from mm_retriever.config import IngestConfig
from mm_retriever.errors import IngestError
from mm_retriever.ingest.chunking import Unit, chunk_units
from mm_retriever.ingest.figures import FigureBox, build_figures, detect_figures, raster_boxes
from mm_retriever.ingest.files import (
    IMAGE_SUFFIXES,
    PDF_SUFFIXES,
    SUPPORTED_SUFFIXES,
    display_path,
    document_id,
)
from mm_retriever.ingest.geometry import center_in
from mm_retriever.ingest.merge import merge_text, new_ocr_lines
from mm_retriever.ingest.ocr import OCREngine, PageOCR, get_ocr_engine, ocr_page, ocr_regions
from mm_retriever.ingest.render import fit_size, pixmap_size, render_page, render_pdf2image
from mm_retriever.ingest.tables import TableText, extract_tables
from mm_retriever.ingest.text import Layer, TextBlock, TextLine, read_layer
from mm_retriever.types import BBox, Document, Figure, Page, TextSource

log = logging.getLogger(__name__)

# MuPDF reports repairs of damaged files on stderr; keep them in its buffer instead
# (``pymupdf.TOOLS.mupdf_warnings()``), so progress bars stay clean.
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)

GARBLED = 0.2  # a layer with more than this share of junk characters is treated as missing
FIGURE_OCR_SHARE = 0.05  # raster images this large (share of the page) without text get OCR
FIGURE_TEXT_CHARS = 20  # ... when the text layer holds fewer characters inside them
_TITLE_PREFIXES = ("microsoft word - ", "microsoft powerpoint - ", "microsoft excel - ")


def _clip(bbox: BBox, rect: pymupdf.Rect) -> BBox:
    """``bbox`` cut to the page rectangle."""
    x0, y0, x1, y1 = bbox
    return (max(x0, rect.x0), max(y0, rect.y0), min(x1, rect.x1), min(y1, rect.y1))


def _clean_title(raw: str | None, fallback: str) -> str:
    title = " ".join((raw or "").split())
    low = title.lower()
    for prefix in _TITLE_PREFIXES:
        if low.startswith(prefix):
            title = title[len(prefix) :]
            low = title.lower()
    for ext in (".docx", ".doc", ".pptx", ".ppt", ".pdf", ".indd"):
        if low.endswith(ext):
            title = title[: -len(ext)]
    if not title.strip() or title.strip().lower() in {"untitled", "title", "none"}:
        return fallback
    return title.strip()


class DocumentReader:
    """Opens and validates one document, then yields its pages in batches.

    >>> with DocumentReader("report.pdf", IngestConfig(ocr="never")) as reader:
    ...     for batch in reader.pages(batch_size=8):
    ...         ...

    Raises ``IngestError`` in ``__init__`` for missing, unsupported, corrupt, encrypted or
    empty files. Image files (PNG/JPEG) are one-page documents whose page size in points is
    the image size in pixels (72 dpi); their page image is the file's own pixels.
    ``timings`` (seconds per stage) and ``counts`` (OCR pages, cache hits) add up as pages
    are read.
    """

    def __init__(self, path: str | Path, config: IngestConfig | None = None) -> None:
        self.path = Path(path)
        self.config = config or IngestConfig()
        self.source = display_path(self.path.expanduser().resolve())
        self.warning: str | None = None  # set when the file was damaged but could be read
        self.timings: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._doc: pymupdf.Document | None = None
        self._image: Image.Image | None = None
        if self.path.is_dir():
            raise IngestError(str(path), "is a folder, not a file")
        suffix = self.path.suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
            raise IngestError(
                str(path), f"unsupported file type '{suffix or '(none)'}' (supported: {supported})"
            )
        if not self.path.is_file():
            raise IngestError(str(path), "file not found")
        self.doc_id = document_id(self.path)
        self.metadata: dict[str, Any] = {
            "file_name": display_path(self.path.name),
            "file_size": self.path.stat().st_size,
        }
        if suffix in PDF_SUFFIXES:
            self._open_pdf()
        elif suffix in IMAGE_SUFFIXES:
            self._open_image()

    # ------------------------------------------------------------ opening

    def _open_pdf(self) -> None:
        try:
            if display_path(self.path) == str(self.path):
                doc = pymupdf.open(self.path, filetype="pdf")
            else:  # a file name that is not valid UTF-8: MuPDF cannot take it as a path
                doc = pymupdf.open(stream=self.path.read_bytes(), filetype="pdf")
        except Exception as e:  # MuPDF raises several types for damaged files
            raise IngestError(str(self.path), f"not a readable PDF ({_short(e)})") from e
        if doc.needs_pass:
            doc.close()
            raise IngestError(str(self.path), "encrypted; decrypt it first")
        if doc.page_count == 0:
            doc.close()
            raise IngestError(str(self.path), "has no pages")
        if doc.is_repaired:
            self.warning = (
                "the PDF is damaged (truncated or corrupt) and was repaired on reading; "
                "pages or content may be missing"
            )
            log.warning("%s: %s", self.source, self.warning)
        self._doc = doc
        self.n_pages = doc.page_count
        meta = {k: v for k, v in (doc.metadata or {}).items() if v}
        self.title = _clean_title(meta.get("title"), display_path(self.path.stem))
        self.metadata.update(meta)
        self.metadata.update({"media_type": "application/pdf", "n_pages": self.n_pages})

    def _open_image(self) -> None:
        try:
            with Image.open(self.path) as im:
                im.load()
                self._image = im.convert("RGB")
                fmt = im.format or ""
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise IngestError(str(self.path), f"not a readable image ({_short(e)})") from e
        if self._image.width < 1 or self._image.height < 1:
            raise IngestError(str(self.path), "has no pages")
        self.n_pages = 1
        self.title = display_path(self.path.stem)
        media = {"PNG": "image/png", "JPEG": "image/jpeg"}.get(fmt, f"image/{fmt.lower()}")
        self.metadata.update({"media_type": media, "n_pages": 1, "format": fmt})

    # ------------------------------------------------------------ public API

    def document(self) -> Document:
        """The document header (``pages`` left empty)."""
        return Document(
            doc_id=self.doc_id,
            source=self.source,
            pages=[],
            title=self.title,
            metadata=dict(self.metadata),
        )

    def pages(self, batch_size: int = 8) -> Iterator[list[Page]]:
        """Yield the pages in batches of ``batch_size`` (rendered, with text, chunks, figures)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, self.n_pages, batch_size):
            yield self.read_pages(start, min(self.n_pages, start + batch_size))

    def read_pages(self, start: int, stop: int) -> list[Page]:
        """Pages ``start .. stop - 1`` (0-based), rendered, with text, chunks and figures."""
        if not 0 <= start < stop <= self.n_pages:
            raise IndexError(f"page range {start}..{stop} out of range (0..{self.n_pages})")
        if self._image is not None:
            return [self._image_page()]
        images = self._render(start, stop)
        return [self._pdf_page(i, img) for i, img in zip(range(start, stop), images, strict=True)]

    def page(self, index: int) -> Page:
        """One page by 0-based index."""
        if not 0 <= index < self.n_pages:
            raise IndexError(f"page index {index} out of range (0..{self.n_pages - 1})")
        if self._image is not None:
            return self._image_page()
        return self._pdf_page(index, self._render(index, index + 1)[0])

    def close(self) -> None:
        if self._doc is not None:
            self._doc.close()
            self._doc = None

    def __enter__(self) -> DocumentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DocumentReader({self.path.name!r}, doc_id={self.doc_id!r}, pages={self.n_pages})"

    # ------------------------------------------------------------ pages

    def _load(self, index: int) -> pymupdf.Page:
        assert self._doc is not None, "the reader is closed"
        try:
            return self._doc.load_page(index)
        except Exception as e:
            raise IngestError(self.source, f"page {index + 1} is unreadable ({_short(e)})") from e

    def _render(self, start: int, stop: int) -> list[Image.Image]:
        t = time.perf_counter()
        dpi = self.config.dpi
        try:
            if self.config.renderer == "pdf2image":
                images = render_pdf2image(self.path, start, stop - 1, dpi)
                sizes = [pixmap_size(self._load(i), dpi) for i in range(start, stop)]
                images = [fit_size(im, size) for im, size in zip(images, sizes, strict=True)]
            else:
                images = [render_page(self._load(i), dpi) for i in range(start, stop)]
        except IngestError:
            raise
        except Exception as e:
            reason = f"pages {start + 1}-{stop} could not be rendered ({_short(e)})"
            raise IngestError(self.source, reason) from e
        self.timings["render"] += time.perf_counter() - t
        return images

    def _pdf_page(self, index: int, image: Image.Image) -> Page:
        cfg = self.config
        page = self._load(index)
        size = (page.rect.width, page.rect.height)
        try:
            t = time.perf_counter()
            layer = read_layer(page)
            t1 = time.perf_counter()
            boxes: list[FigureBox] = []
            if cfg.figures:
                boxes = detect_figures(page, layer.blocks, cfg.figure_min_area)
            t2 = time.perf_counter()
            self.timings["text"] += t1 - t
            self.timings["figures"] += t2 - t1
            tables = extract_tables(page) if cfg.tables else []
            self.timings["tables"] += time.perf_counter() - t2
            ocr = None
            plan = self._ocr_plan(page, layer, boxes)
            if plan == "page":
                ocr = self._ocr(index, lambda: self._ocr_image(page, image))
            elif plan:
                ocr = self._ocr_regions(index, page, plan)
        except IngestError:
            raise
        except Exception as e:
            reason = f"page {index + 1} could not be read ({_short(e)})"
            raise IngestError(self.source, reason) from e
        return self._assemble(index, size, image, layer, ocr, boxes, tables)

    def _image_page(self) -> Page:
        assert self._image is not None
        image = self._image
        size = (float(image.width), float(image.height))
        layer = Layer([])
        ocr = None
        if self.config.ocr != "never":
            ocr = self._ocr(0, lambda: (image, 1.0))
        page = self._assemble(0, size, image, layer, ocr, [])
        if self.config.figures:
            page.figures = [
                Figure(
                    figure_index=0,
                    bbox=(0.0, 0.0, size[0], size[1]),
                    kind="page",
                    caption="",
                    inside_text=page.ocr_text,
                    image=image,
                )
            ]
        return page

    # ------------------------------------------------------------ OCR

    def _ocr_plan(
        self, page: pymupdf.Page, layer: Layer, boxes: list[FigureBox]
    ) -> Literal["page"] | list[BBox] | None:
        """What to OCR: the whole page, some regions of it (PDF points) or nothing.

        ocr=always/never as said; auto: the page when its layer is thin or garbled; its raster
        figures without text (the regions, or the page with ``ocr_figure_crops`` off).
        """
        cfg = self.config
        if cfg.ocr != "auto":
            return "page" if cfg.ocr == "always" else None
        chars = sum(len(b.text.replace(" ", "")) for b in layer.blocks)
        if chars < cfg.min_layer_chars or layer.garbled > GARBLED:
            return "page"
        if not cfg.ocr_figures:
            return None
        page_area = page.rect.width * page.rect.height
        rasters = [b.bbox for b in boxes if b.kind == "raster"] if cfg.figures else None
        if rasters is None:
            rasters = [b.bbox for b in raster_boxes(page, FIGURE_OCR_SHARE * page_area)]
        lines = layer.lines
        wanted: list[BBox] = []
        for bbox in rasters:
            x0, y0, x1, y1 = bbox
            if (x1 - x0) * (y1 - y0) < FIGURE_OCR_SHARE * page_area:
                continue
            inside = sum(len(ln.text) for ln in lines if center_in(ln.bbox, bbox))
            if inside < FIGURE_TEXT_CHARS:
                wanted.append(bbox)
        if not wanted:
            return None
        if not cfg.ocr_figure_crops or cfg.page_text == "ocr":
            return "page"
        return [_clip(b, page.rect) for b in wanted]

    def _ocr_image(self, page: pymupdf.Page, image: Image.Image) -> tuple[Image.Image, float]:
        dpi = self.config.ocr_dpi
        if dpi == self.config.dpi and self.config.renderer == "pymupdf":
            return image, page.rect.width / image.width
        rendered = render_page(page, dpi)
        return rendered, page.rect.width / rendered.width

    def _engine(self) -> OCREngine:
        cfg = self.config
        return get_ocr_engine(cfg.ocr_engine, cfg.ocr_dpi, cfg.ocr_max_side, cfg.ocr_runtime)

    def _ocr(self, index: int, render: Any) -> PageOCR:
        return self._timed(lambda: ocr_page(self._engine(), render, self.doc_id, index))

    def _ocr_regions(self, index: int, page: pymupdf.Page, regions: list[BBox]) -> PageOCR:
        """OCR of the page's ``regions`` only, each rendered alone at ``ocr_dpi``."""

        def render(region: BBox) -> tuple[Image.Image, float]:
            image = render_page(page, self.config.ocr_dpi, clip=region)
            return image, (region[2] - region[0]) / max(image.width, 1)

        self.counts["ocr_regions"] += 1
        return self._timed(lambda: ocr_regions(self._engine(), render, self.doc_id, index, regions))

    def _timed(self, run: Callable[[], tuple[PageOCR, bool]]) -> PageOCR:
        """Run one page's OCR, adding its time and whether the cache answered."""
        t = time.perf_counter()
        result, cached = run()
        self.timings["ocr"] += time.perf_counter() - t
        self.counts["ocr_pages"] += 1
        self.counts["ocr_cached"] += int(cached)
        return result

    # ------------------------------------------------------------ assembly

    def _assemble(
        self,
        index: int,
        size: tuple[float, float],
        image: Image.Image,
        layer: Layer,
        ocr: PageOCR | None,
        boxes: list[FigureBox],
        tables: list[TableText] | None = None,
    ) -> Page:
        """Page text from layer and OCR (plus table text), chunks, and finished figures."""
        t = time.perf_counter()
        cfg = self.config
        layer_text = layer.text
        usable_layer = bool(layer_text) and layer.garbled <= GARBLED
        ocr_text = ocr.text if ocr is not None else ""
        if cfg.page_text == "layer":  # OCR stays in ocr_text only, never in the page text
            ocr = None
        base_text = layer_text
        if cfg.page_text == "ocr":  # the text layer is ignored for text, chunks and figures
            usable_layer, base_text = False, ""
        blocks: list[TextBlock] = list(layer.blocks) if usable_layer else []
        lines: list[TextLine] = list(layer.lines) if usable_layer else []
        units = [Unit(b.text, b.bbox) for b in blocks]
        text, source = (base_text, "layer") if base_text else ("", "none")
        if ocr is not None:
            extra = new_ocr_lines(ocr.lines, lines) if usable_layer else ocr.lines
            extra_lines = [TextLine(ln.text, ln.bbox) for ln in extra]
            if usable_layer:
                text, source = merge_text(layer_text, extra), "layer+ocr"
            elif ocr.lines:
                text, source = "\n".join(ln.text for ln in ocr.lines), "ocr"
            lines += extra_lines
            blocks += [TextBlock(ln.text, ln.bbox, [ln]) for ln in extra_lines]
            units += [Unit(ln.text, ln.bbox) for ln in extra_lines]
        if tables:  # header-propagated table lines: their own chunks, appended to the page text
            units += [Unit(t.text, t.bbox) for t in tables]
            text = "\n\n".join([text, *(t.text for t in tables)]) if text else text
        chunks = chunk_units(units, cfg.chunk_size, cfg.chunk_overlap)
        figures = build_figures(boxes, blocks=blocks, lines=lines, image=image, page_size=size)
        self.timings["assemble"] += time.perf_counter() - t
        text_source: TextSource = source  # type: ignore[assignment]
        return Page(
            doc_id=self.doc_id,
            page_index=index,
            width=size[0],
            height=size[1],
            text=text,
            text_source=text_source,
            layer_text=layer_text,
            ocr_text=ocr_text,
            image=image,
            chunks=chunks,
            figures=figures,
        )


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg[:200]
