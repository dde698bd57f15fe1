"""Splitting a page's text into chunks that keep where they lie on the page."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mm_retriever.types import BBox, Chunk

_BREAK = re.compile(r"(?<=[.!?;:])\s+|\s+")


@dataclass
class Unit:
    """A piece of text that is never split unless it alone exceeds the chunk size."""

    text: str
    bbox: BBox | None


def _union(boxes: Sequence[BBox | None]) -> BBox | None:
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return (
        round(min(b[0] for b in real), 2),
        round(min(b[1] for b in real), 2),
        round(max(b[2] for b in real), 2),
        round(max(b[3] for b in real), 2),
    )


def split_long(text: str, size: int, overlap: int) -> list[str]:
    """Split ``text`` into pieces of at most ``size`` chars at sentence or word breaks."""
    pieces: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(n, start + size)
        if end < n:
            breaks = _BREAK.finditer(text, start + size // 2, end)
            cut = max((m.start() for m in breaks), default=-1)
            if cut > start:
                end = cut
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        space = text.find(" ", nxt, end)  # start the overlap at a word boundary
        start = space + 1 if 0 <= space < end else nxt
    return pieces


def chunk_units(units: Sequence[Unit], size: int, overlap: int) -> list[Chunk]:
    """Pack units greedily into chunks of at most ``size`` chars (joined by newlines).

    Consecutive chunks share whole trailing units up to ``overlap`` chars. A unit longer than
    ``size`` is split on its own (pieces overlap by ``overlap`` chars) and keeps its bbox.
    """
    overlap = min(overlap, size // 2)
    chunks: list[Chunk] = []
    current: list[Unit] = []
    fresh = False  # whether ``current`` holds anything not yet emitted

    def emit() -> None:
        text = "\n".join(u.text for u in current)
        bbox = _union([u.bbox for u in current])
        chunks.append(Chunk(text=text, chunk_index=len(chunks), bbox=bbox))

    def carry() -> list[Unit]:
        kept: list[Unit] = []
        total = 0
        for u in reversed(current):
            if total + len(u.text) + 1 > overlap:
                break
            kept.insert(0, u)
            total += len(u.text) + 1
        return kept

    for unit in units:
        text = unit.text.strip()
        if not text:
            continue
        if len(text) > size:
            if fresh:
                emit()
            current, fresh = [], False
            for piece in split_long(text, size, overlap):
                chunks.append(Chunk(text=piece, chunk_index=len(chunks), bbox=_union([unit.bbox])))
            continue
        length = sum(len(u.text) + 1 for u in current) + len(text)
        if current and length > size:
            if fresh:
                emit()
            current = carry()
            while current and sum(len(u.text) + 1 for u in current) + len(text) > size:
                current.pop(0)
        current.append(Unit(text, unit.bbox))
        fresh = True
    if fresh:
        emit()
    return chunks
