"""Index configuration: ingestion settings, the legs with their encoders, and the fusion.

The whole config is stored in the index manifest, so ``MultimodalIndex.open(uri)`` rebuilds the
same pipeline. Plugins are named by their registry name (kebab-case) plus constructor arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class IngestConfig(BaseModel):
    """How files become pages, text, chunks and figures."""

    model_config = ConfigDict(extra="forbid")

    dpi: int = Field(144, ge=36, le=600, description="page render resolution")
    renderer: Literal["pymupdf", "pdf2image"] = "pymupdf"
    ocr: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: OCR pages whose text layer is missing or thin"
    )
    ocr_engine: Literal["rapidocr", "tesseract"] = "rapidocr"
    ocr_dpi: int = Field(150, ge=72, le=600)
    ocr_max_side: int = Field(
        960,
        ge=0,
        le=10000,
        description="longest side (pixels) of the image rapidocr's text detector sees: larger "
        "images are scaled down for detection only, recognition reads full-resolution line "
        "crops (PaddleOCR's classic default); 0: no limit (about 1.8x slower on a slide)",
    )
    ocr_runtime: Literal["auto", "openvino", "onnxruntime"] = Field(
        "auto",
        description="what rapidocr's models run on: OpenVINO (1.8x ONNX Runtime's speed in "
        "float32, 3.5x in bfloat16, its default on CPUs with AMX; readings differ slightly) "
        "or ONNX Runtime; auto: OpenVINO where it is installed",
    )
    min_layer_chars: int = Field(
        64, description="with ocr=auto, pages with fewer text-layer characters get OCR"
    )
    ocr_figures: bool = Field(
        True,
        description="with ocr=auto, also OCR pages whose raster figures (charts as images) "
        "carry no text layer, so their labels and numbers become text",
    )
    ocr_figure_crops: bool = Field(
        True,
        description="a page OCR'd only for its raster figures (its text layer is fine) has just "
        "those figures read, not the whole page",
    )
    page_text: Literal["merge", "layer", "ocr"] = Field(
        "merge",
        description="page text: the text layer plus the OCR lines it lacks (merge), the text "
        "layer only (layer), or OCR of the rendered page only (ocr; set ocr='always' for every "
        "page)",
    )
    tables: bool = Field(
        False,
        description="add PyMuPDF-found tables as header-propagated lines ('Revenue | 2023 | "
        "4512') to the page text and chunks (mm_retriever.ingest.tables)",
    )
    chunk_size: int = Field(1000, ge=100, description="max characters per text chunk")
    chunk_overlap: int = Field(150, ge=0)
    figures: bool = True
    figure_min_area: float = Field(
        0.01, ge=0, le=1, description="smallest figure kept, as a fraction of the page area"
    )
    image_format: Literal["jpeg", "png"] = "jpeg"
    image_quality: int = Field(85, ge=10, le=100)
    image_store: Literal["source", "encoded"] = Field(
        "source",
        description="source: keep each file once (table 'sources') and render page images "
        "and figure crops from it on demand, as ingestion rendered them (the pymupdf renderer; "
        "about 50 KB a page on the dev set); encoded: store every page image and crop (about "
        "300 KB a page at 144 dpi)",
    )


class PluginSpec(BaseModel):
    """A registry name plus the keyword arguments that construct the plugin."""

    model_config = ConfigDict(extra="forbid")

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class LegSpec(PluginSpec):
    """A retrieval leg. ``alias`` is its name in results (defaults to the registry name)."""

    alias: str | None = None
    weight: float = 1.0

    @property
    def leg_name(self) -> str:
        return self.alias or self.name


DEFAULT_PAGE_MODEL = "vidore/colSmol-256M"
DEFAULT_TEXT_MODEL = "BAAI/bge-small-en-v1.5"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


# Fusion defaults tuned on mmlongbench-dev (benchmarks/README.md): z-scored leg scores, BM25 and
# the page leg at full weight, the dense text leg at 0.75, the figure leg at 0.2. Equal-weight
# RRF(k=60) over these legs scored below BM25 alone there.
DEFAULT_LEG_WEIGHTS = {"page": 1.0, "text": 0.75, "bm25": 1.0, "figure": 0.2}


def default_fusion() -> PluginSpec:
    """Weighted sum of z-scored leg scores (leg weights live on the LegSpecs)."""
    return PluginSpec(name="weighted", options={"normalization": "zscore"})


def default_legs() -> list[LegSpec]:
    """The three legs: page images (ColPali family), text (dense + BM25), figures (CLIP + text)."""
    w = DEFAULT_LEG_WEIGHTS
    return [
        LegSpec(
            name="page",
            options={"encoder": {"name": "colpali", "options": {"model": DEFAULT_PAGE_MODEL}}},
            weight=w["page"],
        ),
        LegSpec(
            name="text",
            weight=w["text"],
            options={
                "encoder": {
                    "name": "sentence-transformers",
                    "options": {"model": DEFAULT_TEXT_MODEL},
                }
            },
        ),
        LegSpec(name="bm25", weight=w["bm25"]),
        LegSpec(
            name="figure",
            weight=w["figure"],
            options={
                "image_encoder": {"name": "clip", "options": {"model": DEFAULT_CLIP_MODEL}},
                "text_encoder": {
                    "name": "sentence-transformers",
                    "options": {"model": DEFAULT_TEXT_MODEL},
                },
            },
        ),
    ]


class IndexConfig(BaseModel):
    """Everything that decides what an index holds and how it is searched."""

    model_config = ConfigDict(extra="forbid")

    ingest: IngestConfig = Field(default_factory=IngestConfig)
    legs: list[LegSpec] = Field(default_factory=default_legs)
    fusion: PluginSpec = Field(default_factory=default_fusion)
    device: str = Field("auto", description="auto (cuda > mps > cpu), or e.g. 'cpu', 'cuda:1'")


def load_config_file(path: str | Path) -> IndexConfig:
    """The ``IndexConfig`` a JSON file holds; ``ConfigError`` (one line naming the file and what
    is wrong: not found, not JSON, not an object, invalid settings) otherwise."""
    import json

    from pydantic import ValidationError

    from mm_retriever.errors import ConfigError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except IsADirectoryError:
        raise ConfigError(str(path), "is a folder, not a JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), f"cannot be read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            str(path), f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            str(path), f"holds a JSON {type(data).__name__}; an IndexConfig is a JSON object"
        )
    try:
        return IndexConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(str(path), validation_summary(e)) from None


def validation_summary(error: Any) -> str:
    """A pydantic ``ValidationError`` as one line: ``where: what; ...`` (at most five)."""
    parts = []
    for err in error.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
