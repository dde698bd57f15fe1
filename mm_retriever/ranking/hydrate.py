"""Hydration: fused page hits -> ``RetrievedPage`` (document fields, page text, matched text,
figure crops, page images from the store, the image cache or a render of the source).

Readers never write into the index; page images may be cached outside it (``image_cache``).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mm_retriever.store import DOCUMENTS, FIGURES, PAGES
from mm_retriever.store.filters import MATCH_NOTHING, PAGE_COLUMNS, where_clause
from mm_retriever.types import FusedHit, RetrievedFigure, RetrievedPage

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger("mm_retriever")

_EXT = {"image/jpeg": "jpg", "image/png": "png"}


def pages_where(keys: Sequence[tuple[str, int]]) -> str:
    """A where-clause matching at least the given (doc_id, page_index) pairs:
    ``doc_id IN (...) AND page_index IN (...)``, which the doc_id B-tree answers (an OR of one
    clause a pair is scanned: 46 vs 11 ms on 333k pages). A few other pairs of those documents
    can match too; callers keep the rows whose key they asked for."""
    if not keys:
        return MATCH_NOTHING
    docs = sorted({d for d, _ in keys})
    pages = sorted({int(p) for _, p in keys})
    return where_clause({"doc_id": docs, "page_index": pages}, PAGE_COLUMNS)


class Hydrator:
    """Turns fused hits into pages. ``max_figures``: matched figure crops attached per page;
    ``include_images``: page and crop images in the results; ``write_images``: put page images
    into the index's image cache (a folder outside the index) so ``image_path`` is set."""

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        max_figures: int = 3,
        include_images: bool = True,
        write_images: bool = True,
    ) -> None:
        self.index = index
        self.max_figures = max_figures
        self.include_images = include_images
        self.write_images = write_images

    def hydrate(self, fused: Sequence[FusedHit], k: int) -> list[RetrievedPage]:
        """RetrievedPages for the first ``k`` committed pages of ``fused``."""
        store = self.index.store
        doc_ids = sorted({h.doc_id for h in fused})
        if not doc_ids:
            return []
        docs = {
            r["doc_id"]: r
            for r in store.query(
                DOCUMENTS,
                where_clause({"doc_id": doc_ids}, PAGE_COLUMNS),
                ["doc_id", "source", "title"],
            ).to_pylist()
        }
        top = [h for h in fused if h.doc_id in docs][:k]
        if not top:
            return []
        where = pages_where([h.key for h in top])
        columns = ["doc_id", "page_index", "width", "height", "text", "image_mime"]
        if self.include_images:
            columns.append("image")
        pages = {
            (r["doc_id"], r["page_index"]): r
            for r in store.query(PAGES, where, columns).to_pylist()
        }
        figures = self._figures(top)
        out = []
        for h in top:
            row = pages.get(h.key, {})
            doc = docs[h.doc_id]
            page = RetrievedPage(
                doc_id=h.doc_id,
                page_index=h.page_index,
                source=doc["source"],
                title=doc["title"] or "",
                score=h.score,
                text=row.get("text") or "",
                leg_ranks=dict(h.leg_ranks),
                leg_scores=dict(h.leg_scores),
                matched_text=self._matched_text(h),
                figures=figures.get(h.key, []),
                width=float(row.get("width") or 0.0),
                height=float(row.get("height") or 0.0),
                image_bytes=row.get("image"),
                image_mime=row.get("image_mime") or "image/jpeg",
            )
            if self.include_images and row and not page.image_bytes:
                self._load_image(page)
            page.image_path = self._image_path(page)
            out.append(page)
        return out

    def _matched_text(self, hit: FusedHit) -> str:
        """The best-ranked text match (chunk legs first, then figure text)."""
        ranked = sorted(hit.leg_hits.items(), key=lambda kv: (hit.leg_ranks[kv[0]], kv[0]))
        for kinds in (("chunk",), ("figure",)):
            for name, leg_hit in ranked:
                leg = self.index.legs.get(name)
                if leg.matched_kind in kinds and leg_hit.matched_text:
                    return leg_hit.matched_text
        return ""

    def _figures(self, top: Sequence[FusedHit]) -> dict[tuple[str, int], list[RetrievedFigure]]:
        """Matched figure crops of the top pages, from one query of the figures table."""
        wanted: dict[tuple[str, int], dict[int, float]] = {}
        for h in top:
            for name, leg_hit in h.leg_hits.items():
                leg = self.index.legs.get(name)
                if leg.matched_kind != "figure" or not leg_hit.matched:
                    continue
                scores = leg_hit.matched_scores or [leg_hit.score] * len(leg_hit.matched)
                best = wanted.setdefault(h.key, {})
                for idx, score in list(zip(leg_hit.matched, scores, strict=False))[
                    : self.max_figures
                ]:
                    best[idx] = max(score, best.get(idx, float("-inf")))
        if not wanted:
            return {}
        columns = ["doc_id", "page_index", "figure_index", "bbox", "caption", "inside_text"]
        if self.include_images:
            columns.append("image")
        rows = self.index.store.query(FIGURES, pages_where(list(wanted)), columns).to_pylist()
        rows = [r for r in rows if (r["doc_id"], r["page_index"]) in wanted]
        if self.include_images:
            self.index.page_images.fill_figures(
                [r for r in rows if r["figure_index"] in wanted[(r["doc_id"], r["page_index"])]]
            )
        out: dict[tuple[str, int], list[RetrievedFigure]] = defaultdict(list)
        for r in rows:
            key = (r["doc_id"], r["page_index"])
            score = wanted[key].get(r["figure_index"])
            if score is None:
                continue
            out[key].append(
                RetrievedFigure(
                    figure_index=r["figure_index"],
                    bbox=tuple(r["bbox"]),
                    caption=r["caption"] or "",
                    inside_text=r["inside_text"] or "",
                    score=float(score),
                    image_bytes=r.get("image"),
                )
            )
        for figs in out.values():
            figs.sort(key=lambda f: (-f.score, f.figure_index))
        return out

    def _cache_name(self, page: RetrievedPage) -> str:
        return f"{page.doc_id}/{page.page_index}.{_EXT.get(page.image_mime, 'jpg')}"

    def _load_image(self, page: RetrievedPage) -> None:
        """Fill the image of a page stored as its source: the cached file, else a render."""
        cache = self.index.image_cache
        path = cache.get(self._cache_name(page)) if cache is not None else None
        if path is not None:
            with contextlib.suppress(OSError):
                page.image_bytes = path.read_bytes()
                return
        try:
            found = self.index.page_images.render_encoded(page.doc_id, page.page_index)
        except Exception as exc:  # a damaged source: the page still comes back, without image
            log.warning("no image for %s p.%d: %s", page.doc_id, page.page_number, exc)
            return
        if found is not None:
            page.image_bytes, page.image_mime = found

    def _image_path(self, page: RetrievedPage) -> str | None:
        cache = self.index.image_cache  # outside the index: readers never write there
        if cache is None:
            return None
        name = self._cache_name(page)
        path = cache.get(name)
        if path is not None:
            return str(path)
        if not (self.write_images and page.image_bytes):
            return None
        path = cache.put(name, page.image_bytes)
        return None if path is None else str(path)
