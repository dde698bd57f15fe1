"""Combining the text layer with OCR: keep the layer, add OCR lines it does not already hold."""

from __future__ import annotations

from collections.abc import Sequence

from mm_retriever.ingest.ocr import PageLine
from mm_retriever.ingest.text import TextLine, tokens

CONTAINED = 0.7  # share of an OCR line's tokens found in the layer nearby to count as present
SLACK = 3.0  # points around an OCR line's bbox searched for layer text


def _v_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = min(a[3], b[3]) - max(a[1], b[1])
    low = min(a[3] - a[1], b[3] - b[1])
    return inter / low if low > 0 else 0.0


def new_ocr_lines(ocr_lines: Sequence[PageLine], layer_lines: Sequence[TextLine]) -> list[PageLine]:
    """OCR lines whose words the text layer does not already hold at the same place.

    A line counts as present when at least 70% of its normalised tokens occur in layer lines
    that overlap it on the page. Lines with no word characters are dropped.
    """
    out = []
    for line in ocr_lines:
        toks = tokens(line.text)
        if not toks:
            continue
        x0, y0, x1, y1 = line.bbox
        box = (x0 - SLACK, y0 - SLACK, x1 + SLACK, y1 + SLACK)
        near: set[str] = set()
        for ll in layer_lines:
            b = ll.bbox
            if b[0] <= box[2] and b[2] >= box[0] and _v_overlap(b, box) >= 0.5:
                near.update(tokens(ll.text))
        found = sum(1 for t in toks if t in near)
        if found < CONTAINED * len(toks):
            out.append(line)
    return out


def merge_text(layer_text: str, extra: Sequence[PageLine]) -> str:
    """The layer text followed by the OCR lines it lacks."""
    parts = [layer_text] if layer_text else []
    parts.extend(line.text for line in extra)
    return "\n".join(parts)
