"""Figure captions and the text inside a figure.

A figure's caption is the nearest text block above or below it (overlapping it horizontally)
that starts with Figure/Fig./Chart/Table/Exhibit; failing that, the title block(s) just above
it, as report-style charts put a bold title and a subtitle there. Its inside text is the lines
(text layer, plus OCR lines the layer lacks) whose centre lies inside its bbox.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mm_retriever.ingest.geometry import center_in, h_overlap
from mm_retriever.ingest.text import TextBlock, TextLine
from mm_retriever.types import BBox

CAPTION_RE = re.compile(
    r"^\s*(?:figure|fig\.|fig|chart|table|exhibit)(?![a-z])\s*"
    r"(?:\d|[ivxlc]+\b|[a-z]\b|[:.\-–—|])",
    re.IGNORECASE,
)

CAPTION_MAX_CHARS = 400
TITLE_REACH = 48.0  # a title block ends at most this far above the figure
TITLE_GAP = 16.0  # ... and a subtitle sits this close under the title
WORD = re.compile(r"[^\W\d_]{2,}")


def is_caption(text: str) -> bool:
    """Whether ``text`` starts like a caption: "Figure 3:", "Fig. 2", "Table 1", "Exhibit A"."""
    return bool(CAPTION_RE.match(text))


def find_caption(bbox: BBox, blocks: Sequence[TextBlock], page_height: float) -> str:
    """The caption of the figure at ``bbox``: see the module docstring."""
    max_gap = max(72.0, 0.15 * page_height)
    best: tuple[float, str] | None = None
    for b in blocks:
        if not is_caption(b.text) or h_overlap(b.bbox, bbox) < 0.2:
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
    """Up to two title-like blocks stacked just above the figure (a chart's title, subtitle).

    Short blocks on the way up (legend entries, axis units, column heads) are stepped over.
    """
    above = sorted(
        (
            b
            for b in blocks
            if b.bbox[3] <= bbox[1] + 2 and h_overlap(b.bbox, bbox) >= 0.5 and len(b.text) <= 300
        ),
        key=lambda b: -b.bbox[3],
    )
    picked: list[TextBlock] = []
    edge = bbox[1]
    for b in above:
        if not picked and bbox[1] - b.bbox[3] > TITLE_REACH:
            break
        if picked and edge - b.bbox[3] > TITLE_GAP:
            break
        if len(WORD.findall(b.text)) < 4:
            if picked:
                break
            continue
        picked.append(b)
        edge = b.bbox[1]
        if len(picked) == 2:
            break
    return " ".join(b.text for b in reversed(picked))[:CAPTION_MAX_CHARS]


def text_inside(bbox: BBox, lines: Sequence[TextLine]) -> str:
    """Text of the lines whose centre lies inside ``bbox``, top to bottom."""
    inside = [ln for ln in lines if center_in(ln.bbox, bbox)]
    inside.sort(key=lambda ln: (round(ln.bbox[1] / 3), ln.bbox[0]))
    return "\n".join(ln.text for ln in inside)
