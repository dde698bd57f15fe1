"""Figures on a page: embedded raster images and vector-drawn charts, with captions and crops.

Detection is deliberately plain:

- raster: every placed image (``page.get_image_info``) that is neither tiny nor a full-page
  background/scan; touching images are merged.
- vector: the page's drawings (``page.get_drawings``) are grouped by position (boxes that
  come within a few points of a growing cluster join it). Clusters that are too
  small, too few paths, ruled table grids (axis-aligned strokes only) or framed prose boxes are
  dropped; the rest grow to take in their short labels (tick labels, legends, axis titles).

A figure's caption is the nearest text block above or below that starts with Figure/Fig./
Chart/Table/Exhibit; failing that, the title block(s) just above it (report-style charts put a
bold title there). Its inside text is the text-layer lines inside its bbox (plus OCR lines there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pymupdf
from PIL import Image

from mm_retriever.ingest.text import TextBlock, TextLine, visible_bbox
from mm_retriever.types import BBox, Figure

CAPTION_RE = re.compile(
    r"^\s*(?:figure|fig\.|fig|chart|table|exhibit)(?![a-z])\s*"
    r"(?:\d|[ivxlc]+\b|[a-z]\b|[:.\-–—|])",
    re.IGNORECASE,
)

MAX_PAGE_SHARE = 0.85  # larger images/clusters are backgrounds or the page itself
JOIN = 6.0  # drawings closer than this (points) belong to one cluster
LABEL_GAP = 10.0  # short text blocks this close to a chart are its labels
MAX_LABEL_CHARS = 80
MAX_FIGURES = 20
CAPTION_MAX_CHARS = 400


@dataclass
class FigureBox:
    """A detected figure region before captions and crops."""

    bbox: BBox
    kind: str  # "raster" | "vector"


def is_caption(text: str) -> bool:
    """Whether ``text`` starts like a caption: "Figure 3:", "Fig. 2", "Table 1", "Exhibit A"."""
    return bool(CAPTION_RE.match(text))


# ---------------------------------------------------------------- geometry helpers


def _area(b: BBox) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _union(a: BBox, b: BBox) -> BBox:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _intersection(a: BBox, b: BBox) -> float:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def _near(a: BBox, b: BBox, gap: float) -> bool:
    return not (a[2] < b[0] - gap or b[2] < a[0] - gap or a[3] < b[1] - gap or b[3] < a[1] - gap)


def _clip(b: BBox, page: BBox) -> BBox:
    return (max(b[0], page[0]), max(b[1], page[1]), min(b[2], page[2]), min(b[3], page[3]))


def center_in(inner: BBox, outer: BBox, pad: float = 2.0) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - pad <= cx <= outer[2] + pad and outer[1] - pad <= cy <= outer[3] + pad


def _h_overlap(a: BBox, b: BBox) -> float:
    """Horizontal overlap as a share of the narrower box."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    narrow = min(a[2] - a[0], b[2] - b[0])
    return inter / narrow if narrow > 0 else 0.0


def merge_boxes(boxes: list[FigureBox], gap: float = 2.0) -> list[FigureBox]:
    """Merge boxes that overlap or nearly touch, until none do; the larger box names the kind."""
    out = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if _near(a.bbox, b.bbox, gap):
                    kind = a.kind if _area(a.bbox) >= _area(b.bbox) else b.kind
                    out[i] = FigureBox(_union(a.bbox, b.bbox), kind)
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return out


# ---------------------------------------------------------------- detection


def raster_boxes(page: pymupdf.Page, min_area: float) -> list[FigureBox]:
    """Placed raster images worth indexing as figures (merged where they touch)."""
    prect = tuple(page.rect)
    page_area = _area(prect)
    boxes = []
    for info in page.get_image_info(xrefs=False):
        bbox = _clip(visible_bbox(page, info["bbox"]), prect)
        area = _area(bbox)
        if area >= min_area and area <= MAX_PAGE_SHARE * page_area:
            boxes.append(FigureBox(bbox, "raster"))
    return merge_boxes(boxes)


def _is_light(color: Sequence[float] | None) -> bool:
    return color is None or min(color) >= 0.85


def _path_stats(path: dict) -> tuple[bool, bool]:
    """(axis_aligned_strokes_only, has_colored_fill) for one drawing path."""
    colored_fill = path.get("fill") is not None and not _is_light(path.get("fill"))
    aligned = True
    for item in path.get("items", ()):
        op = item[0]
        if op == "l":
            p, q = item[1], item[2]
            if abs(p.x - q.x) > 0.5 and abs(p.y - q.y) > 0.5:
                aligned = False
        elif op == "re" or op == "qu":
            r = pymupdf.Rect(item[1]) if op == "re" else item[1].rect
            if colored_fill and min(r.width, r.height) > 2.5:
                aligned = False
        else:  # curves
            aligned = False
    return aligned, colored_fill


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
    # a later cluster's box may have grown over an earlier one: join those too
    merged = True
    while merged:
        merged = False
        for i in range(len(clusters)):
            for j in range(i + 1, len(clusters)):
                a, b = boxes[i], boxes[j]
                if (
                    a[0] <= b[2] + gap
                    and b[0] <= a[2] + gap
                    and a[1] <= b[3] + gap
                    and b[1] <= a[3] + gap
                ):
                    clusters[i] += clusters.pop(j)
                    boxes[i] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                    boxes.pop(j)
                    merged = True
                    break
            if merged:
                break
    return clusters


def vector_boxes(
    page: pymupdf.Page, blocks: Sequence[TextBlock], min_area: float
) -> list[FigureBox]:
    """Vector-drawn charts and diagrams: clustered drawings with their short text labels."""
    prect = tuple(page.rect)
    page_area = _area(prect)
    paths = []
    for path in page.get_drawings():
        bbox = _clip(visible_bbox(page, path["rect"]), prect)
        w, h = bbox[2] - bbox[0], bbox[3] - bbox[1]
        if w < 0 or h < 0 or (w < 0.5 and h < 0.5):
            continue
        if _area(bbox) > MAX_PAGE_SHARE * page_area:
            continue  # page background
        if path.get("color") is None and _is_light(path.get("fill")) and path.get("fill"):
            continue  # white boxes painted behind content
        paths.append((bbox, path))
    if len(paths) < 3:
        return []
    rects = np.array([b for b, _ in paths], dtype=float)
    found = []
    for members in cluster_rects(rects):
        if len(members) < 3:
            continue
        lo, hi = rects[members, :2].min(axis=0), rects[members, 2:].max(axis=0)
        bbox = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
        stats = [_path_stats(paths[i][1]) for i in members]
        if all(aligned for aligned, _ in stats) and not any(fill for _, fill in stats):
            continue  # ruled table grid, rules, frames
        bbox = _grow_with_labels(bbox, blocks)
        if _area(bbox) < min_area or _area(bbox) > MAX_PAGE_SHARE * page_area:
            continue
        if _is_prose_box(bbox, blocks):
            continue
        found.append(FigureBox(bbox, "vector"))
    return merge_boxes(found)


def _grow_with_labels(bbox: BBox, blocks: Sequence[TextBlock], rounds: int = 2) -> BBox:
    """Take in short text blocks (labels, legends, axis titles) touching the drawings."""
    for _ in range(rounds):
        grown = bbox
        for b in blocks:
            if len(b.text) > MAX_LABEL_CHARS or is_caption(b.text):
                continue
            if _near(b.bbox, bbox, LABEL_GAP) and not center_in(b.bbox, bbox, 0):
                grown = _union(grown, b.bbox)
        if grown == bbox:
            break
        bbox = grown
    return bbox


def _is_prose_box(bbox: BBox, blocks: Sequence[TextBlock]) -> bool:
    """A framed or shaded box of running text (sidebar, call-out), not a chart."""
    inside = [ln.text for b in blocks for ln in b.lines if center_in(ln.bbox, bbox)]
    total = sum(len(t) for t in inside)
    long = sum(len(t) for t in inside if len(t) > 50)
    return total > 200 and long >= 0.5 * total


def detect_figures(
    page: pymupdf.Page, blocks: Sequence[TextBlock], min_area_share: float
) -> list[FigureBox]:
    """Raster and vector figures of a page, merged where they overlap, in reading order."""
    min_area = max(min_area_share * _area(tuple(page.rect)), 1.0)
    boxes = raster_boxes(page, min_area) + vector_boxes(page, blocks, min_area)
    boxes = merge_boxes(boxes)
    boxes.sort(key=lambda f: -_area(f.bbox))
    boxes = boxes[:MAX_FIGURES]
    boxes.sort(key=lambda f: (round(f.bbox[1]), f.bbox[0]))
    return boxes


# ---------------------------------------------------------------- captions, text, crops


def find_caption(bbox: BBox, blocks: Sequence[TextBlock], page_height: float) -> str:
    """The caption of the figure at ``bbox``: see the module docstring."""
    max_gap = max(72.0, 0.15 * page_height)
    best: tuple[float, str] | None = None
    for b in blocks:
        if not is_caption(b.text) or _h_overlap(b.bbox, bbox) < 0.2:
            continue
        if center_in(b.bbox, bbox, 0):
            gap = 0.0
        elif b.bbox[1] >= bbox[3] - 2:
            gap = b.bbox[1] - bbox[3]
        elif b.bbox[3] <= bbox[1] + 2:
            gap = bbox[1] - b.bbox[3]
        else:
            continue
        if gap <= max_gap and (best is None or gap < best[0]):
            best = (gap, b.text)
    if best is not None:
        return best[1][:CAPTION_MAX_CHARS]
    return _title_above(bbox, blocks)


def _title_above(bbox: BBox, blocks: Sequence[TextBlock]) -> str:
    """Up to two short blocks stacked just above the figure (a chart's title and subtitle)."""
    above = sorted(
        (
            b
            for b in blocks
            if b.bbox[3] <= bbox[1] + 2 and _h_overlap(b.bbox, bbox) >= 0.5 and len(b.text) <= 300
        ),
        key=lambda b: -b.bbox[3],
    )
    picked: list[TextBlock] = []
    edge = bbox[1]
    for b in above:
        gap = edge - b.bbox[3]
        if gap > (36.0 if not picked else 16.0) or len(picked) == 2:
            break
        picked.append(b)
        edge = b.bbox[1]
    return " ".join(b.text for b in reversed(picked))[:CAPTION_MAX_CHARS]


def text_inside(bbox: BBox, lines: Sequence[TextLine]) -> str:
    """Text of the lines whose centre lies inside ``bbox``, top to bottom."""
    inside = [ln for ln in lines if center_in(ln.bbox, bbox)]
    inside.sort(key=lambda ln: (round(ln.bbox[1] / 3), ln.bbox[0]))
    return "\n".join(ln.text for ln in inside)


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
