"""Where on a page each leg matched a query, and an overlay PNG that shows it.

- text and BM25 legs: boxes of the matched chunks and of the page words that match the query's
  terms (the BM25 leg's own tokenizer: stop words out, stemmed). Word boxes come from the PDF
  text layer (PyMuPDF) when the source file is still where it was indexed from (same content
  hash), and from the page's OCR (the OCR cache the ingest wrote, or OCR of the stored page
  image at request time) where the page was OCR'd or the source is gone;
- figure leg: the bbox of each matched figure crop;
- page leg (ColPali family): per-patch MaxSim similarity maps per query token and combined,
  computed by re-encoding the stored page image (colpali-engine's interpretability helpers),
  on the page's coordinate grid.

``explain_page(index, query, doc_id, page_index)`` returns an ``Explanation`` (JSON-ready with
``to_dict``); ``overlay_png(index, query, doc_id, page_index)`` renders it over the page image.
All boxes are ``(x0, y0, x1, y1)`` in PDF points, origin top-left (see ``mm_retriever.types``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mm_retriever.explain.boxes import (
    _chunk_boxes,
    _figure_boxes,
    _term_boxes,
    line_boxes,
    locate,
)
from mm_retriever.explain.model import (
    BoxKind,
    Explanation,
    MatchBox,
    PageNotFoundError,
    SimilarityMap,
    Word,
)
from mm_retriever.explain.overlay import encode_png, render_overlay
from mm_retriever.explain.similarity import page_similarity
from mm_retriever.explain.words import _image, _page_row, page_words
from mm_retriever.protocols import Query

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)


__all__ = [
    "BoxKind",
    "Explanation",
    "MatchBox",
    "PageNotFoundError",
    "SimilarityMap",
    "Word",
    "encode_png",
    "explain_page",
    "line_boxes",
    "locate",
    "overlay_png",
    "page_similarity",
    "page_words",
    "render_overlay",
]

# ------------------------------------------------------------------ public API


def explain_page(
    index: MultimodalIndex,
    query: str | Query,
    doc_id: str,
    page_index: int,
    *,
    legs: Sequence[str] | None = None,
    similarity: bool = True,
    clean_query: bool = True,
    expand_query: bool = True,
) -> Explanation:
    """Where each leg of ``index`` matched ``query`` on page ``(doc_id, page_index)``.

    ``legs``: the legs to explain (default all). ``similarity``: compute the page leg's
    similarity maps (one page encode, the costly part). ``clean_query``: drop answer-format
    instructions first, and ``expand_query``: append financial metrics' line items, as searches
    do (``HybridRetriever(clean_query=..., expand_query=...)``).
    """
    row = _page_row(index, doc_id, page_index)
    names = list(legs) if legs else list(index.legs)
    retriever = index.retriever(
        legs=names,
        include_images=False,
        write_images=False,
        clean_query=clean_query,
        expand_query=expand_query,
    )
    q = retriever.prepare(Query.of(query))  # the query text the legs see
    filters = {"doc_id": doc_id, "page_index": int(page_index)}
    found = retriever.leg_hits(q, 1, filters)
    hits = {n: leg_hits[0] for n, leg_hits in found.items() if leg_hits}
    out = Explanation(
        doc_id=doc_id,
        page_index=page_index,
        query=q.text,
        width=float(row["width"]),
        height=float(row["height"]),
        leg_scores={n: h.score for n, h in hits.items()},
    )
    text_legs = [n for n in names if index.legs[n].matched_kind == "chunk"]
    if q.text and text_legs:
        words, out.word_source = page_words(index, doc_id, page_index, row)
        if not words and row.get("text"):
            out.notes.append("no word boxes: the source file is gone and the page has no OCR")
        out.boxes += _term_boxes(index, q.text, words, text_legs)
        for name in text_legs:
            if name in hits:
                out.boxes += _chunk_boxes(index, name, hits[name], words)
    for name in names:
        leg = index.legs[name]
        if leg.matched_kind == "figure" and name in hits:
            out.boxes += _figure_boxes(index, name, hits[name])
        if similarity and leg.kind == "page" and q.text:
            try:
                out.similarity = page_similarity(leg, name, q.text, _image(index, row))
            except Exception as exc:  # a model whose processor lacks the helpers: say so
                out.notes.append(f"no similarity map for leg '{name}': {exc}")
    return out


def overlay_png(
    index: MultimodalIndex,
    query: str | Query,
    doc_id: str,
    page_index: int,
    *,
    legs: Sequence[str] | None = None,
    max_width: int | None = None,
    token: int | None = None,
) -> bytes:
    """The page image with the heat map and match boxes drawn over it, as PNG bytes.

    ``token``: show the page leg's map of that query token (an index into
    ``SimilarityMap.tokens``) instead of the combined map.
    """
    explanation = explain_page(index, query, doc_id, page_index, legs=legs)
    image = _image(index, _page_row(index, doc_id, page_index))
    return encode_png(render_overlay(image, explanation, token=token), max_width)
