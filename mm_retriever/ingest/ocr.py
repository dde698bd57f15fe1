"""OCR engines (RapidOCR, tesseract) and the on-disk OCR cache.

Engines read a PIL image and return lines with pixel bboxes. ``ocr_page`` turns those into PDF
points and caches them per page at
``$MM_RETRIEVER_CACHE/ocr/{folder}/{doc_id}/{page_index:05d}.json``, ``folder`` being
``{engine}-{dpi}dpi[-det{max_side}][-{runtime}]`` (default cache root ``~/.cache/mm-retriever``), as
``{"text": str, "lines": [{"text", "bbox" (points), "conf"}]}``; OCR of page regions only (the
raster figures of a page whose text layer is fine) goes to ``{page_index:05d}-r{key}.json``.
The heavy OCR models load once per process and are shared by every reader.

RapidOCR's models run on OpenVINO where it is installed (``runtime="auto"``; 1.8x ONNX Runtime's
speed in float32, 3.5x in bfloat16, the precision OpenVINO picks on CPUs with AMX) and on ONNX
Runtime otherwise; the cache folder names the runtime and precision (``-ov-bf16``), since their
readings differ slightly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from mm_retriever.cache import cache_root
from mm_retriever.errors import MissingExtraError
from mm_retriever.ingest.text import clean_text
from mm_retriever.types import BBox

log = logging.getLogger(__name__)

OCR_ENGINES = ("rapidocr", "tesseract")
OCR_RUNTIMES = ("auto", "openvino", "onnxruntime")


@dataclass
class OCRLine:
    """A recognised line: text, bbox in pixels of the image read, confidence 0..1."""

    text: str
    bbox_px: BBox
    conf: float


@dataclass
class OCRResult:
    """What an engine read from one image: the lines, and their text one line a line."""

    text: str
    lines: list[OCRLine] = field(default_factory=list)

    @classmethod
    def from_lines(cls, lines: list[OCRLine]) -> OCRResult:
        return cls("\n".join(line.text for line in lines), lines)


@runtime_checkable
class OCREngine(Protocol):
    """Reads the text of an image. ``dpi`` is the resolution pages are rendered at for it;
    ``max_side`` the longest side its text detector sees (0: the image as it is); ``runtime``
    what its models run on, as named in its cache folder ("": the engine's only one)."""

    name: str
    dpi: int
    max_side: int
    runtime: str

    def read(self, image: Image.Image) -> OCRResult: ...


@dataclass
class PageLine:
    """An OCR line on a page, bbox in PDF points."""

    text: str
    bbox: BBox
    conf: float


@dataclass
class PageOCR:
    """OCR of one page in PDF points: the cache's content."""

    text: str
    lines: list[PageLine] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "lines": [
                {"text": ln.text, "bbox": [round(v, 2) for v in ln.bbox], "conf": round(ln.conf, 4)}
                for ln in self.lines
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PageOCR:
        lines = [
            PageLine(str(d["text"]), tuple(float(v) for v in d["bbox"]), float(d.get("conf", 1.0)))
            for d in data.get("lines", [])
        ]
        return cls(str(data.get("text", "")), lines)

    @classmethod
    def from_result(cls, result: OCRResult, points_per_pixel: float) -> PageOCR:
        s = points_per_pixel
        lines = [
            PageLine(ln.text, tuple(v * s for v in ln.bbox_px), ln.conf) for ln in result.lines
        ]
        return cls(result.text, lines)


# ---------------------------------------------------------------- engines


_threads: int | None = None  # ONNX Runtime threads of the OCR models (None: all cores)


def set_ocr_threads(threads: int | None) -> None:
    """Threads each OCR model may use (a pool worker sets 1 so N workers fill N cores).
    Takes effect for models loaded after the call."""
    global _threads
    _threads = threads


def resolve_ocr_runtime(runtime: str = "auto") -> str:
    """The runtime RapidOCR's models run on: "openvino" or "onnxruntime" ("auto": OpenVINO
    where it is installed)."""
    if runtime not in OCR_RUNTIMES:
        raise ValueError(f"unknown OCR runtime '{runtime}': use one of {', '.join(OCR_RUNTIMES)}")
    if runtime == "auto":
        return "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"
    if runtime == "openvino" and not importlib.util.find_spec("openvino"):
        raise MissingExtraError("openvino", purpose="OCR with ocr_runtime='openvino'")
    return runtime


@functools.cache
def openvino_precision() -> str:
    """The precision OpenVINO's CPU plugin computes in by default here ("bf16" on CPUs with
    AMX, "f32" on most others)."""
    import openvino

    hint = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return str(hint.get_type_name())


@functools.cache
def _rapidocr_model(max_side: int = 0, runtime: str = "onnxruntime") -> Any:
    """The RapidOCR pipeline with the PP-OCR ONNX models bundled in its wheel (no download).

    ``max_side`` > 0: the text detector sees the image scaled down to that longest side (as
    PaddleOCR's classic ``det_limit_type="max"``, 960); recognition still reads line crops of
    the full-resolution image. 0: rapidocr's default (no downscaling of large images).
    ``runtime``: "onnxruntime" or "openvino" (which reads the same ONNX files).
    """
    try:
        import rapidocr
        from rapidocr import EngineType, RapidOCR
    except ImportError as e:
        raise MissingExtraError("rapidocr", purpose="OCR with ocr_engine='rapidocr'") from e
    # "error": an empty page is normal here, not worth a warning per page
    params: dict[str, Any] = {"Global.log_level": "error"}
    if runtime == "openvino":
        for stage in ("Det", "Cls", "Rec"):
            params[f"{stage}.engine_type"] = EngineType.OPENVINO
    if _threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = _threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        params["EngineConfig.openvino.inference_num_threads"] = _threads
    if max_side:
        params["Det.limit_type"] = "max"
        params["Det.limit_side_len"] = max_side
    models = Path(rapidocr.__file__).parent / "models"
    bundled = {
        "Det.model_path": models / "PP-OCRv6_det_small.onnx",
        "Rec.model_path": models / "PP-OCRv6_rec_small.onnx",
        "Cls.model_path": models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }
    # Point at the bundled files explicitly, so the engine never tries to fetch a model; fall
    # back to the package's own defaults if a future wheel ships other file names.
    if all(p.is_file() for p in bundled.values()):
        params.update({k: str(v) for k, v in bundled.items()})
    return RapidOCR(params=params)


class RapidOCREngine:
    """RapidOCR 3.x (PP-OCR models on OpenVINO or ONNX Runtime); reads chart labels well."""

    name = "rapidocr"

    def __init__(self, dpi: int = 150, max_side: int = 0, runtime: str = "auto") -> None:
        self.dpi = dpi
        self.max_side = max_side
        self._runtime = resolve_ocr_runtime(runtime)
        self._lock = threading.Lock()

    @functools.cached_property
    def runtime(self) -> str:
        """ "" for ONNX Runtime (the cache folders of earlier versions), else e.g. "ov-bf16"."""
        return f"ov-{openvino_precision()}" if self._runtime == "openvino" else ""

    def read(self, image: Image.Image) -> OCRResult:
        model = _rapidocr_model(self.max_side, self._runtime)
        with self._lock:
            out = model(image.convert("RGB"))
        if out.txts is None or out.boxes is None:
            return OCRResult("", [])
        lines: list[OCRLine] = []
        for box, txt, score in zip(out.boxes, out.txts, out.scores, strict=False):
            text = clean_text(str(txt)).replace("\n", " ")
            if not text:
                continue
            xs = [float(p[0]) for p in box]
            ys = [float(p[1]) for p in box]
            lines.append(OCRLine(text, (min(xs), min(ys), max(xs), max(ys)), float(score)))
        return OCRResult.from_lines(lines)


class TesseractEngine:
    """Tesseract via pytesseract (needs the ``tesseract`` binary and its language data)."""

    name = "tesseract"

    def __init__(
        self, dpi: int = 150, max_side: int = 0, runtime: str = "auto", lang: str = "eng"
    ) -> None:
        self.dpi = dpi
        self.max_side = 0  # tesseract finds lines at the image's own resolution
        self.runtime = ""  # the tesseract program; ``runtime`` applies to rapidocr only
        self.lang = lang
        _check_tesseract()

    def read(self, image: Image.Image) -> OCRResult:
        import pytesseract

        data = pytesseract.image_to_data(
            image.convert("RGB"), lang=self.lang, output_type=pytesseract.Output.DICT
        )
        grouped: dict[tuple[int, int, int], dict[str, Any]] = {}
        for j, word in enumerate(data["text"]):
            if not str(word).strip() or float(data["conf"][j]) < 0:
                continue
            key = (data["block_num"][j], data["par_num"][j], data["line_num"][j])
            x, y = data["left"][j], data["top"][j]
            w, h = data["width"][j], data["height"][j]
            g = grouped.setdefault(key, {"words": [], "confs": [], "box": [1e9, 1e9, -1.0, -1.0]})
            g["words"].append(str(word))
            g["confs"].append(float(data["conf"][j]))
            b = g["box"]
            b[0], b[1] = min(b[0], x), min(b[1], y)
            b[2], b[3] = max(b[2], x + w), max(b[3], y + h)
        lines = []
        for g in grouped.values():
            text = clean_text(" ".join(g["words"]))
            if text:
                conf = sum(g["confs"]) / len(g["confs"]) / 100.0
                lines.append(OCRLine(text, tuple(float(v) for v in g["box"]), conf))
        return OCRResult.from_lines(lines)


@functools.cache
def _check_tesseract() -> None:
    try:
        import pytesseract
    except ImportError as e:
        raise MissingExtraError("pytesseract", purpose="OCR with ocr_engine='tesseract'") from e
    try:
        pytesseract.get_tesseract_version()
    except pytesseract.TesseractNotFoundError as e:
        raise RuntimeError(
            "ocr_engine='tesseract' needs the tesseract program: install it "
            "(apt-get install tesseract-ocr tesseract-ocr-eng / brew install tesseract) "
            "or use ocr_engine='rapidocr'"
        ) from e


_ENGINES: dict[tuple[str, int, int, str], OCREngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_ocr_engine(
    name: str, dpi: int = 150, max_side: int = 0, runtime: str = "auto"
) -> OCREngine:
    """The OCR engine ``name`` ("rapidocr" or "tesseract"), one instance per process and
    setting. ``max_side``: the longest side its text detector sees (rapidocr; 0: no limit);
    ``runtime``: what rapidocr's models run on (``OCR_RUNTIMES``)."""
    factories: dict[str, Callable[[int, int, str], OCREngine]] = {
        "rapidocr": RapidOCREngine,
        "tesseract": TesseractEngine,
    }
    if name not in factories:
        raise ValueError(f"unknown OCR engine '{name}': use one of {', '.join(OCR_ENGINES)}")
    with _ENGINES_LOCK:
        key = (name, dpi, max_side, runtime)
        if key not in _ENGINES:
            _ENGINES[key] = factories[name](dpi, max_side, runtime)
        return _ENGINES[key]


# ---------------------------------------------------------------- cache


def ocr_cache_path(
    engine: str,
    dpi: int,
    doc_id: str,
    page_index: int,
    *,
    max_side: int = 0,
    regions: str = "",
    runtime: str = "",
) -> Path:
    """Where the OCR of one page is cached (``regions``: the key of an OCR of page regions;
    ``runtime``: the engine's ``runtime`` tag)."""
    folder = f"{engine}-{dpi}dpi" + (f"-det{max_side}" if max_side and engine == "rapidocr" else "")
    folder += f"-{runtime}" if runtime else ""
    name = f"{page_index:05d}" + (f"-r{regions}" if regions else "")
    return cache_root() / "ocr" / folder / doc_id / f"{name}.json"


def engine_cache_path(
    engine: OCREngine, doc_id: str, page_index: int, *, regions: str = ""
) -> Path:
    """Where ``engine``'s OCR of one page (or of its ``regions``) is cached."""
    return ocr_cache_path(
        engine.name,
        engine.dpi,
        doc_id,
        page_index,
        max_side=engine.max_side,
        regions=regions,
        runtime=engine.runtime,
    )


def regions_key(regions: Sequence[BBox]) -> str:
    """A short key naming a set of page regions (rounded to whole points)."""
    text = ";".join(",".join(str(round(v)) for v in box) for box in regions)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def load_cached(path: Path) -> PageOCR | None:
    """The cached OCR at ``path``, or None when absent or unreadable."""
    try:
        return PageOCR.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable OCR cache file %s (%s)", path, e)
        return None


def save_cached(path: Path, ocr: PageOCR) -> None:
    """Write the cache file atomically; a cache that cannot be written is only logged."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(ocr.to_json(), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        log.warning("could not write OCR cache file %s (%s)", path, e)


def ocr_page(
    engine: OCREngine,
    render: Callable[[], tuple[Image.Image, float]],
    doc_id: str,
    page_index: int,
) -> tuple[PageOCR, bool]:
    """OCR one page through the cache. ``render`` gives (image, points per pixel) on a miss.

    Returns the page's OCR (bboxes in PDF points) and whether it came from the cache.
    """
    path = engine_cache_path(engine, doc_id, page_index)

    def read() -> PageOCR:
        image, points_per_pixel = render()
        return PageOCR.from_result(engine.read(image), points_per_pixel)

    return _through_cache(path, read)


def _through_cache(path: Path, read: Callable[[], PageOCR]) -> tuple[PageOCR, bool]:
    """The OCR cached at ``path``, else ``read()`` saved there; and whether it was cached."""
    cached = load_cached(path)
    if cached is not None:
        return cached, True
    result = read()
    save_cached(path, result)
    return result, False


def ocr_regions(
    engine: OCREngine,
    render: Callable[[BBox], tuple[Image.Image, float]],
    doc_id: str,
    page_index: int,
    regions: Sequence[BBox],
) -> tuple[PageOCR, bool]:
    """OCR only ``regions`` of a page (PDF points) through the cache: their lines, in page points.

    ``render(region)`` gives the region's image and points per pixel on a miss. Used for the
    raster figures of a page whose text layer is fine: a fraction of the page's pixels to read.
    """
    path = engine_cache_path(engine, doc_id, page_index, regions=regions_key(regions))

    def read() -> PageOCR:
        lines: list[PageLine] = []
        for region in regions:
            image, s = render(region)
            x0, y0 = region[0], region[1]
            for ln in engine.read(image).lines:
                bx0, by0, bx1, by1 = ln.bbox_px
                box = (x0 + bx0 * s, y0 + by0 * s, x0 + bx1 * s, y0 + by1 * s)
                lines.append(PageLine(ln.text, box, ln.conf))
        return PageOCR("\n".join(ln.text for ln in lines), lines)

    return _through_cache(path, read)
