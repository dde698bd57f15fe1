"""Figures on a page: embedded raster images and vector-drawn charts, with captions and crops.

Detection is deliberately plain:

- raster: every placed image (``page.get_image_info``) that is neither tiny nor a full-page
  background/scan; touching images are merged.
  Images under running text (brochure backgrounds) and thin strips (text set as images) are
  dropped.
- vector: the page's drawings (``page.get_drawings``) are grouped by position (boxes that
  come within a few points of a growing cluster join it). Clusters that are too small, too
  few items, ruled table grids (axis-aligned strokes only), thin strips or framed prose boxes
  are dropped; the rest grow to take in their short labels (tick labels, legends, axis titles).
- panels of one figure (close together, only labels between them) are joined.

Captions and inside text: see ``captions.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pymupdf
from PIL import Image

from mm_retriever.ingest.captions import WORD, find_caption, is_caption, text_inside
from mm_retriever.ingest.geometry import (
    area,
    center_in,
    clip,
    h_overlap,
    intersection,
    near,
    union,
    v_overlap,
)
from mm_retriever.ingest.text import TextBlock, TextLine, visible_bbox
from mm_retriever.types import BBox, Figure

MIN_SIDE = 30.0  # points; thinner regions are rules, text lines set as images, table rows
MAX_ASPECT = 8.0
MAX_PAGE_SHARE = 0.85  # larger images/clusters are backgrounds or the page itself
JOIN = 6.0  # drawings closer than this (points) belong to one cluster
LABEL_GAP = 10.0  # short text blocks this close above/below a chart are its labels
SIDE_LABEL_GAP = 36.0  # ... and this close beside it (row labels, legends)
MAX_LABEL_CHARS = 80
MAX_FIGURES = 20
PANEL_GAP = 24.0  # panels of one figure sit this close, with nothing but labels between
PROSE_WORDS = 6  # a line with this many words is running text, not a label

T = TypeVar("T")


@dataclass
class FigureBox:
    """A detected figure region before captions and crops."""

    bbox: BBox
    kind: str  # "raster" | "vector"


def merge_pairs(items: list[T], join: Callable[[T, T], T | None]) -> list[T]:
    """Join pairs until none joins: the first pair (i < j) that ``join`` turns into one item
    (not None) puts it at i and drops j, and the scan starts over."""
    out = list(items)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                joined = join(out[i], out[j])
                if joined is not None:
                    out[i] = joined
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out


def merge_boxes(boxes: list[FigureBox], gap: float = 2.0) -> list[FigureBox]:
    """Merge boxes that overlap or nearly touch, until none do; the larger box names the kind."""

    def join(a: FigureBox, b: FigureBox) -> FigureBox | None:
        if not near(a.bbox, b.bbox, gap):
            return None
        kind = a.kind if area(a.bbox) >= area(b.bbox) else b.kind
        return FigureBox(union(a.bbox, b.bbox), kind)

    return merge_pairs(boxes, join)


# ---------------------------------------------------------------- detection


def raster_boxes(page: pymupdf.Page, min_area: float) -> list[FigureBox]:
    """Placed raster images worth indexing as figures (merged where they touch)."""
    prect = tuple(page.rect)
    page_area = area(prect)
    boxes = []
    for info in page.get_image_info(xrefs=False):
        bbox = clip(visible_bbox(page, info["bbox"]), prect)
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if min(w, h) >= MIN_SIDE and area(bbox) <= MAX_PAGE_SHARE * page_area:
            boxes.append(FigureBox(bbox, "raster"))
    return [b for b in merge_boxes(boxes) if _well_shaped(b.bbox, min_area)]


def _is_light(color: Sequence[float] | None) -> bool:
    return color is None or min(color) >= 0.85


def _is_ruling(path: dict) -> bool:
    """Whether a drawing path only rules or frames: axis-aligned lines, thin bars, boxes with
    no or light fill (what table grids and page furniture are made of)."""
    solid = path.get("fill") is not None and not _is_light(path.get("fill"))
    rect = path.get("rect")
    if solid and rect is not None and min(abs(rect.width), abs(rect.height)) > 2.5:
        return False  # a solid coloured area: bars, tiles, legend swatches, pie slices
    for item in path.get("items", ()):
        op = item[0]
        if op == "l":
            p, q = item[1], item[2]
            if abs(p.x - q.x) > 0.5 and abs(p.y - q.y) > 0.5:
                return False  # a slanted segment: line charts, arrows, diagrams
        elif op in ("re", "qu"):
            r = pymupdf.Rect(item[1]) if op == "re" else item[1].rect
            if solid and min(abs(r.width), abs(r.height)) > 2.5:
                return False
        else:
            return False  # curves: pies, lines, symbols
    return True


def _well_shaped(bbox: BBox, min_area: float) -> bool:
    """Big enough, not a thin strip (a rule, a line of text set as an image, a table row)."""
    w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
    return w * h >= min_area and min(w, h) >= MIN_SIDE and max(w, h) <= MAX_ASPECT * min(w, h)


def cluster_rects(rects: np.ndarray, gap: float = JOIN) -> list[list[int]]:
    """Group rects (``[n, 4]``) whose boxes come within ``gap`` of a growing cluster's box.

    A cluster starts from one rect and absorbs every rect near its bounding box until none is
    left, so a chart's bars, axes and gridlines end up together. Vectorised over the rects.
    """
    remaining = np.arange(len(rects))
    clusters: list[list[int]] = []
    boxes: list[np.ndarray] = []
    while remaining.size:
        members = [int(remaining[0])]
        box = rects[remaining[0]].copy()
        remaining = remaining[1:]
        while remaining.size:
            r = rects[remaining]
            near = (
                (r[:, 0] <= box[2] + gap)
                & (r[:, 2] >= box[0] - gap)
                & (r[:, 1] <= box[3] + gap)
                & (r[:, 3] >= box[1] - gap)
            )
            if not near.any():
                break
            members.extend(int(i) for i in remaining[near])
            box = np.concatenate(
                [np.minimum(box[:2], r[near, :2].min(0)), np.maximum(box[2:], r[near, 2:].max(0))]
            )
            remaining = remaining[~near]
        clusters.append(members)
        boxes.append(box)

    def join(
        x: tuple[list[int], np.ndarray], y: tuple[list[int], np.ndarray]
    ) -> tuple[list[int], np.ndarray] | None:
        (ma, a), (mb, b) = x, y
        if a[0] <= b[2] + gap and b[0] <= a[2] + gap and a[1] <= b[3] + gap and b[1] <= a[3] + gap:
            return ma + mb, np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
        return None

    # a later cluster's box may have grown over an earlier one: join those too
    return [members for members, _ in merge_pairs(list(zip(clusters, boxes, strict=True)), join)]


def vector_boxes(
    page: pymupdf.Page, blocks: Sequence[TextBlock], min_area: float
) -> list[FigureBox]:
    """Vector-drawn charts and diagrams: clustered drawings with their short text labels."""
    prect = tuple(page.rect)
    page_area = area(prect)
    paths = []
    for path in page.get_drawings():
        bbox = clip(visible_bbox(page, path["rect"]), prect)
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if w < 0 or h < 0 or (w < 0.5 and h < 0.5):
            continue
        if area(bbox) > MAX_PAGE_SHARE * page_area:
            continue  # page background
        if path.get("color") is None and _is_light(path.get("fill")) and path.get("fill"):
            continue  # white boxes painted behind content
        paths.append((bbox, path))
    if not paths:
        return []
    rects = np.array([b for b, _ in paths], dtype=float)
    found = []
    for members in cluster_rects(rects):
        if sum(len(paths[i][1].get("items", ())) for i in members) < 3:
            continue
        lo, hi = rects[members, :2].min(axis=0), rects[members, 2:].max(axis=0)
        bbox = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        if all(_is_ruling(paths[i][1]) for i in members):
            continue  # ruled table grid, rules, frames
        bbox = _grow_with_labels(bbox, blocks)
        if not _well_shaped(bbox, min_area) or area(bbox) > MAX_PAGE_SHARE * page_area:
            continue
        if _is_prose_box(bbox, blocks):
            continue
        found.append(FigureBox(bbox, "vector"))
    return merge_boxes(found)


def _is_label_of(label: BBox, bbox: BBox) -> bool:
    """A label touches the chart: just above/below it, or beside it within its height."""
    h_inter = min(label[2], bbox[2]) - max(label[0], bbox[0])
    v_inter = min(label[3], bbox[3]) - max(label[1], bbox[1])
    if h_inter > 0:  # above or below
        return label[3] >= bbox[1] - LABEL_GAP and label[1] <= bbox[3] + LABEL_GAP
    if v_inter > 0.5 * (label[3] - label[1]):  # row labels, legends at the side
        return label[2] >= bbox[0] - SIDE_LABEL_GAP and label[0] <= bbox[2] + SIDE_LABEL_GAP
    return near(label, bbox, LABEL_GAP / 2)


def _grow_with_labels(bbox: BBox, blocks: Sequence[TextBlock], rounds: int = 3) -> BBox:
    """Take in short text blocks (labels, legends, axis titles) touching the drawings."""
    for _ in range(rounds):
        grown = bbox
        for b in blocks:
            if len(b.text) > MAX_LABEL_CHARS or is_caption(b.text):
                continue
            if not center_in(b.bbox, bbox, 0) and _is_label_of(b.bbox, bbox):
                grown = union(grown, b.bbox)
        if grown == bbox:
            break
        bbox = grown
    return bbox


def _is_prose_box(bbox: BBox, blocks: Sequence[TextBlock]) -> bool:
    """A framed/shaded box or background image under running text, not a chart."""
    inside = [ln.text for b in blocks for ln in b.lines if center_in(ln.bbox, bbox)]
    total = sum(len(t) for t in inside)
    prose = sum(len(t) for t in inside if len(WORD.findall(t)) >= PROSE_WORDS)
    return total > 200 and prose >= 0.5 * total


def _between(a: BBox, b: BBox) -> BBox:
    """The gap region between two boxes (spanning both in the other direction)."""
    x0, x1 = sorted((a[2], b[0])) if a[2] <= b[0] else sorted((b[2], a[0]))
    y0, y1 = sorted((a[3], b[1])) if a[3] <= b[1] else sorted((b[3], a[1]))
    if h_overlap(a, b) > 0:  # stacked: the gap is vertical
        x0, x1 = min(a[0], b[0]), max(a[2], b[2])
    else:  # side by side
        y0, y1 = min(a[1], b[1]), max(a[3], b[3])
    return (x0, y0, x1, y1)


def merge_panels(boxes: list[FigureBox], blocks: Sequence[TextBlock]) -> list[FigureBox]:
    """Join panels of one figure: neighbours close together with no caption or prose between."""

    def join(fa: FigureBox, fb: FigureBox) -> FigureBox | None:
        a, b = fa.bbox, fb.bbox
        aligned = h_overlap(a, b) >= 0.5 or v_overlap(a, b) >= 0.5
        if not aligned or not near(a, b, PANEL_GAP):
            return None
        gap = _between(a, b)
        if any(
            (is_caption(t.text) or len(WORD.findall(t.text)) >= PROSE_WORDS)
            and intersection(t.bbox, gap) > 0
            and not center_in(t.bbox, a, 0)
            and not center_in(t.bbox, b, 0)
            for t in blocks
        ):
            return None
        kind = fa.kind if area(a) >= area(b) else fb.kind
        return FigureBox(union(a, b), kind)

    return merge_pairs(boxes, join)


def detect_figures(
    page: pymupdf.Page, blocks: Sequence[TextBlock], min_area_share: float
) -> list[FigureBox]:
    """Raster and vector figures of a page, merged where they overlap, in reading order."""
    min_area = max(min_area_share * area(tuple(page.rect)), 1.0)
    rasters = [b for b in raster_boxes(page, min_area) if not _is_prose_box(b.bbox, blocks)]
    boxes = rasters + vector_boxes(page, blocks, min_area)
    boxes = merge_panels(merge_boxes(boxes), blocks)
    boxes.sort(key=lambda f: -area(f.bbox))
    boxes = boxes[:MAX_FIGURES]
    boxes.sort(key=lambda f: (round(f.bbox[1]), f.bbox[0]))
    return boxes


# ---------------------------------------------------------------- captions, text, crops


def crop(
    image: Image.Image, bbox: BBox, page_size: tuple[float, float], pad: float = 4.0
) -> Image.Image:
    """Cut ``bbox`` (points, padded) out of the rendered page ``image``."""
    sx, sy = image.width / page_size[0], image.height / page_size[1]
    box = (
        max(0, int((bbox[0] - pad) * sx)),
        max(0, int((bbox[1] - pad) * sy)),
        min(image.width, int(np.ceil((bbox[2] + pad) * sx))),
        min(image.height, int(np.ceil((bbox[3] + pad) * sy))),
    )
    return image.crop(box)


def build_figures(
    boxes: Sequence[FigureBox],
    *,
    blocks: Sequence[TextBlock],
    lines: Sequence[TextLine],
    image: Image.Image | None,
    page_size: tuple[float, float],
) -> list[Figure]:
    """Figures with captions (from ``blocks``), inside text (from ``lines``) and crops."""
    figures = []
    for i, box in enumerate(boxes):
        figures.append(
            Figure(
                figure_index=i,
                bbox=tuple(round(v, 2) for v in box.bbox),
                kind=box.kind,  # type: ignore[arg-type]
                caption=find_caption(box.bbox, blocks, page_size[1]),
                inside_text=text_inside(box.bbox, lines),
                image=crop(image, box.bbox, page_size) if image is not None else None,
            )
        )
    return figures
