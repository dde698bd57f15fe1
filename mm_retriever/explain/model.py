"""What an explanation holds: match boxes, similarity maps, words."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mm_retriever.types import BBox

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


BoxKind = Literal["term", "chunk", "figure"]
_WORD = re.compile(r"\w+", re.UNICODE)


class PageNotFoundError(LookupError):
    """No committed page ``(doc_id, page_index)`` in the index."""


@dataclass
class MatchBox:
    """A region of the page that matched: a query term, a chunk, or a figure crop."""

    leg: str
    kind: BoxKind
    bbox: BBox
    weight: float  # 0..1, relative within its kind on this page
    text: str = ""
    score: float | None = None  # the leg's raw score for this part, when it has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "kind": self.kind,
            "bbox": [round(float(v), 2) for v in self.bbox],
            "weight": round(float(self.weight), 4),
            "text": self.text,
            "score": self.score,
        }


@dataclass
class SimilarityMap:
    """Page-leg MaxSim similarity per image patch: a grid over the whole page.

    ``combined[r, c]`` and ``per_token[t][r, c]`` are raw dot products; row 0 is the top of the
    page. Patch ``(r, c)`` covers ``(c*w/cols, r*h/rows, (c+1)*w/cols, (r+1)*h/rows)`` points.
    """

    leg: str
    tokens: list[str]
    token_positions: list[int]  # each token's position in the encoded query
    per_token: np.ndarray  # [n_tokens, rows, cols]
    combined: np.ndarray  # [rows, cols]: the best token's similarity per patch

    def normalized(self, token: int | None = None) -> np.ndarray:
        """``combined`` (or query token ``token``'s map) scaled to 0..1 on this page."""
        grid = self.combined if token is None else self.per_token[token]
        lo, hi = float(grid.min()), float(grid.max())
        return (grid - lo) / (hi - lo) if hi > lo else np.zeros_like(grid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "grid": list(self.combined.shape),
            "tokens": self.tokens,
            "token_positions": self.token_positions,
            "combined": np.round(self.combined, 4).tolist(),
            "per_token": np.round(self.per_token, 4).tolist(),
        }


@dataclass
class Explanation:
    """Where one page matched one query, per leg."""

    doc_id: str
    page_index: int
    query: str
    width: float  # points
    height: float
    leg_scores: dict[str, float] = field(default_factory=dict)  # legs that matched the page
    boxes: list[MatchBox] = field(default_factory=list)
    similarity: SimilarityMap | None = None
    word_source: str = "none"  # "layer", "ocr", "layer+ocr" or "none"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "page_index": self.page_index,
            "query": self.query,
            "width": self.width,
            "height": self.height,
            "leg_scores": self.leg_scores,
            "word_source": self.word_source,
            "boxes": [b.to_dict() for b in self.boxes],
            "similarity": self.similarity.to_dict() if self.similarity else None,
            "notes": self.notes,
        }


@dataclass
class Word:
    text: str
    bbox: BBox
    line: tuple[Any, ...]  # words of one text block (PDF) or OCR line share this key
