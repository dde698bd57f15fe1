"""Drawing an explanation over the page image: heat map, match boxes, PNG encoding."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from mm_retriever.explain.model import Explanation, SimilarityMap

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def render_overlay(
    image: Image.Image, explanation: Explanation, *, token: int | None = None
) -> Image.Image:
    """Draw ``explanation`` over the page ``image`` (any resolution of the same page)."""
    base = image.convert("RGBA")
    sx = base.width / max(explanation.width, 1e-6)
    sy = base.height / max(explanation.height, 1e-6)
    sim = explanation.similarity
    if sim is not None:
        if token is not None and not 0 <= token < len(sim.tokens):
            raise ValueError(f"token {token} out of range: the query has {len(sim.tokens)}")
        base = Image.alpha_composite(base, _heat_layer(sim, base.size, token))
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    order = {"chunk": 0, "figure": 1, "term": 2}
    for box in sorted(explanation.boxes, key=lambda b: order[b.kind]):
        x0, y0, x1, y1 = box.bbox
        rect = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        w = max(0.25, min(1.0, box.weight))
        if box.kind == "term":  # a highlighter stroke
            draw.rectangle(_pad(rect, 1), fill=(255, 214, 0, int(90 + 80 * w)))
        elif box.kind == "chunk":
            draw.rectangle(_pad(rect, 3), fill=(37, 99, 235, int(18 + 30 * w)))
            draw.rectangle(_pad(rect, 3), outline=(37, 99, 235, 170), width=1)
        else:  # figure crop
            draw.rectangle(_pad(rect, 2), outline=(219, 39, 119, 230), width=4)
    return Image.alpha_composite(base, layer).convert("RGB")


def encode_png(image: Image.Image, max_width: int | None = None) -> bytes:
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _heat_layer(sim: SimilarityMap, size: tuple[int, int], token: int | None) -> Image.Image:
    """A translucent heat map of the similarity, upscaled to ``size``."""
    from mm_retriever.errors import require_extra

    colormaps = require_extra("matplotlib", "matplotlib", "plot", "overlay heat maps").colormaps
    values = sim.normalized(token)
    small = Image.fromarray((values * 255).astype("uint8"), mode="L")
    grey = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    rgba = colormaps["inferno"](grey)
    rgba[..., 3] = 0.15 + 0.45 * grey
    return Image.fromarray((rgba * 255).astype("uint8"), mode="RGBA")


def _pad(rect: tuple[float, float, float, float], p: float) -> tuple[float, ...]:
    return (rect[0] - p, rect[1] - p, rect[2] + p, rect[3] + p)
