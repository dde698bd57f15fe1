"""Boxes of what the text, BM25 and figure legs matched: query terms, chunks, figure crops."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mm_retriever.explain.model import _WORD, MatchBox, Word
from mm_retriever.store import FIGURES
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause
from mm_retriever.types import BBox, LegHit

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ boxes


def _norm(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


def _term_boxes(
    index: MultimodalIndex, query: str, words: Sequence[Word], text_legs: Sequence[str]
) -> list[MatchBox]:
    """Boxes of the page words that match a query term (BM25's tokenizer when there is one)."""
    if not words:
        return []
    bm25 = next((n for n in text_legs if index.legs[n].kind == "bm25"), None)
    if bm25 is not None:
        tokenize = index.legs[bm25].tokenize  # type: ignore[attr-defined]
        terms = set(tokenize([query])[0])
        word_terms = tokenize([w.text for w in words])
        leg = bm25
    else:
        terms = {t for t in _norm(query) if len(t) > 2}
        word_terms = [_norm(w.text) for w in words]
        leg = text_legs[0]
    if not terms:
        return []
    # rarer terms on the page weigh more (a cheap, page-local IDF)
    counts: dict[str, int] = {}
    for toks in word_terms:
        for t in set(toks) & terms:
            counts[t] = counts.get(t, 0) + 1
    out = []
    for word, toks in zip(words, word_terms, strict=True):
        hit = [t for t in toks if t in terms]
        if hit:
            weight = max(1.0 / counts[t] for t in hit) ** 0.5
            out.append(MatchBox(leg, "term", word.bbox, weight, word.text))
    return out


def _part_scores(hit: LegHit) -> dict[int, float]:
    """Score of each matched part (chunk or figure); the page score where the leg gave none."""
    scores = hit.matched_scores or [hit.score] * len(hit.matched)
    return dict(zip(hit.matched, scores, strict=False))


def _chunk_texts(index: MultimodalIndex, leg: str, hit: LegHit) -> dict[int, str]:
    table = index.legs[leg].table  # type: ignore[attr-defined]
    where = where_clause(
        {"doc_id": hit.doc_id, "page_index": hit.page_index, "chunk_index": hit.matched},
        {**PAGE_COLUMNS, "chunk_index": int},
    )
    rows = index.store.query(table, where, ["chunk_index", "text"]).to_pylist()
    return {r["chunk_index"]: r["text"] for r in rows}


def _chunk_boxes(
    index: MultimodalIndex, leg: str, hit: LegHit, words: Sequence[Word], top: int = 2
) -> list[MatchBox]:
    """Line boxes of the leg's best matched chunks, located among the page words."""
    matched = [c for c in hit.matched if c >= 0][:top]
    if not matched or not words:
        return []
    scores = _part_scores(hit)
    best = max(scores[c] for c in matched)
    texts = _chunk_texts(index, leg, LegHit(hit.doc_id, hit.page_index, hit.score, 0, matched))
    word_tokens = [" ".join(_norm(w.text)) for w in words]
    out = []
    for c in matched:
        span = locate(_norm(texts.get(c, "")), word_tokens)
        if span is None:
            continue
        weight = scores[c] / best if best > 0 else 1.0
        for bbox in line_boxes(words[span[0] : span[1]]):
            out.append(MatchBox(leg, "chunk", bbox, weight, texts[c][:200], float(scores[c])))
    return out


def locate(chunk_tokens: Sequence[str], word_tokens: Sequence[str]) -> tuple[int, int] | None:
    """The window of page words (start, stop) that best covers a chunk's tokens.

    A window as long as the chunk slides over the words; the one holding most chunk tokens
    wins (None if under a third of them are found), then it is trimmed to matching ends.
    """
    if not chunk_tokens or not word_tokens:
        return None
    vocab = set(chunk_tokens)
    hit = np.array([bool(t) and set(t.split()) <= vocab for t in word_tokens], dtype=np.int32)
    n = min(len(chunk_tokens), len(word_tokens))
    sums = np.convolve(hit, np.ones(n, dtype=np.int32), mode="valid")
    start = int(np.argmax(sums))
    if sums[start] < max(1, n // 3):
        return None
    inside = np.flatnonzero(hit[start : start + n])
    return start + int(inside[0]), start + int(inside[-1]) + 1


def line_boxes(words: Sequence[Word]) -> list[BBox]:
    """One box per text block (PDF) or line (OCR) of ``words``, in reading order."""
    lines: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()
    for w in words:
        b = lines.get(w.line)
        if b is None:
            lines[w.line] = list(w.bbox)
        else:
            b[0], b[1] = min(b[0], w.bbox[0]), min(b[1], w.bbox[1])
            b[2], b[3] = max(b[2], w.bbox[2]), max(b[3], w.bbox[3])
    return [tuple(b) for b in lines.values()]  # type: ignore[misc]


def _figure_boxes(index: MultimodalIndex, leg: str, hit: LegHit) -> list[MatchBox]:
    if not hit.matched:
        return []
    scores = _part_scores(hit)
    where = where_clause(
        {"doc_id": hit.doc_id, "page_index": hit.page_index, "figure_index": hit.matched},
        {**PAGE_COLUMNS, "figure_index": int},
    )
    rows = index.store.query(FIGURES, where, ["figure_index", "bbox", "caption"]).to_pylist()
    best = max(scores.values())
    return [
        MatchBox(
            leg,
            "figure",
            tuple(float(v) for v in r["bbox"]),  # type: ignore[arg-type]
            scores[r["figure_index"]] / best if best > 0 else 1.0,
            r["caption"] or f"figure {r['figure_index'] + 1}",
            float(scores[r["figure_index"]]),
        )
        for r in sorted(rows, key=lambda r: -scores[r["figure_index"]])
    ]
