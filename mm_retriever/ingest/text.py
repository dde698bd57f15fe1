"""The PDF text layer of a page: blocks and lines with bboxes, in reading order."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import pymupdf

from mm_retriever.types import BBox

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_TOKEN = re.compile(r"\w+", re.UNICODE)
# dict extraction without image blocks (their bytes are never needed here)
_FLAGS = (
    pymupdf.TEXT_PRESERVE_LIGATURES | pymupdf.TEXT_MEDIABOX_CLIP | pymupdf.TEXT_DEHYPHENATE
) & ~pymupdf.TEXT_PRESERVE_IMAGES


@dataclass
class TextLine:
    """One line of text with its bbox (PDF points, visible page coordinates)."""

    text: str
    bbox: BBox


@dataclass
class TextBlock:
    """A block (usually a paragraph) of text: its lines joined by spaces, and its bbox."""

    text: str
    bbox: BBox
    lines: list[TextLine]


def clean_text(text: str) -> str:
    """Normalise Unicode (NFKC), collapse runs of spaces, strip each line, drop empty lines."""
    text = unicodedata.normalize("NFKC", text).replace("\ufffd", " ")
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits), for containment tests."""
    return _TOKEN.findall(text.lower())


def visible_bbox(page: pymupdf.Page, rect: pymupdf.Rect | BBox) -> BBox:
    """Map a rect from PyMuPDF's unrotated page space to the visible (rotated) page."""
    r = pymupdf.Rect(rect)
    if page.rotation:
        r = r * page.rotation_matrix
        r.normalize()
    return (r.x0, r.y0, r.x1, r.y1)


@dataclass
class Layer:
    """A page's text layer: blocks in reading order, and how garbled the raw characters were."""

    blocks: list[TextBlock]
    garbled: float = 0.0

    @property
    def text(self) -> str:
        """The page text: one block a line."""
        return "\n".join(b.text for b in self.blocks)

    @property
    def lines(self) -> list[TextLine]:
        return [line for b in self.blocks for line in b.lines]


def read_layer(page: pymupdf.Page) -> Layer:
    """The page's text layer as blocks sorted top-to-bottom then left-to-right."""
    data = page.get_text("dict", flags=_FLAGS, sort=True)
    blocks: list[TextBlock] = []
    raw: list[str] = []
    for block in data["blocks"]:
        if block.get("type", 0) != 0:
            continue
        lines: list[TextLine] = []
        for line in block["lines"]:
            raw_text = "".join(span["text"] for span in line["spans"])
            raw.append(raw_text)
            text = clean_text(raw_text)
            if text:
                lines.append(TextLine(text, visible_bbox(page, line["bbox"])))
        if lines:
            text = " ".join(line.text for line in lines)
            blocks.append(TextBlock(text, visible_bbox(page, block["bbox"]), lines))
    return Layer(blocks, garbled_fraction("".join(raw)))


def garbled_fraction(text: str) -> float:
    """Share of characters that are replacement, private-use or control characters."""
    if not text:
        return 0.0
    bad = sum(
        1
        for ch in text
        if ch == "\ufffd" or (unicodedata.category(ch) in {"Co", "Cc", "Cs"} and ch not in "\n\t")
    )
    return bad / len(text)
