"""Small bbox helpers; boxes are ``(x0, y0, x1, y1)`` in PDF points."""

from __future__ import annotations

from mm_retriever.types import BBox


def area(b: BBox) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def union(a: BBox, b: BBox) -> BBox:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def intersection(a: BBox, b: BBox) -> float:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def near(a: BBox, b: BBox, gap: float) -> bool:
    return not (a[2] < b[0] - gap or b[2] < a[0] - gap or a[3] < b[1] - gap or b[3] < a[1] - gap)


def clip(b: BBox, page: BBox) -> BBox:
    return (max(b[0], page[0]), max(b[1], page[1]), min(b[2], page[2]), min(b[3], page[3]))


def center_in(inner: BBox, outer: BBox, pad: float = 2.0) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] - pad <= cx <= outer[2] + pad and outer[1] - pad <= cy <= outer[3] + pad


def v_overlap(a: BBox, b: BBox) -> float:
    """Vertical overlap as a share of the shorter box."""
    inter = min(a[3], b[3]) - max(a[1], b[1])
    short = min(a[3] - a[1], b[3] - b[1])
    return inter / short if short > 0 else 0.0


def h_overlap(a: BBox, b: BBox) -> float:
    """Horizontal overlap as a share of the narrower box."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    narrow = min(a[2] - a[0], b[2] - b[0])
    return inter / narrow if narrow > 0 else 0.0
