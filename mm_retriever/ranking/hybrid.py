"""HybridRetriever: prepare the question, run the legs, fuse their page rankings, re-rank by
document, pin named figures/tables/sections, hydrate the top pages.

Preparing (once per query): answer-format instructions dropped (``mm_retriever.query.query_text``),
financial metrics' line items appended (``mm_retriever.query.query_expansion``). Corpus-wide, the
document prior (``ranking.document_prior``, computed while the legs run) re-ranks pages by
how well their whole document matches; then pages whose caption or heading the question names
come first (``mm_retriever.query.references``).

Hydration reads the ``documents``, ``pages`` and ``figures`` tables once each per query. Page
images come back encoded (``RetrievedPage.image_bytes``, decoded lazily by ``.image()``): the
stored bytes, or, for documents kept as their source file (schema 2), the page rendered and
encoded as at ingest time (``MultimodalIndex.page_images``). They are also written once to a
bounded cache folder outside the index (``MultimodalIndex.image_cache``, LRU eviction) on first
retrieval and exposed as ``image_path`` (turn off with ``write_images=False``); a later hit reads
the cached file instead of rendering again. Only committed documents (with a ``documents`` row)
are returned, so a document being written by another process never shows.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PIL import Image

from mm_retriever import registry
from mm_retriever.limits import check_search
from mm_retriever.protocols import Fusion, Query
from mm_retriever.query.query_expansion import expand_query as expand_financial_terms
from mm_retriever.query.query_text import retrieval_text
from mm_retriever.query.references import caption_regex, is_listing, matches, references
from mm_retriever.ranking.document_prior import DocumentPrior
from mm_retriever.ranking.filing_prior import FilingIndex, FilingPrior
from mm_retriever.ranking.fusion import apply_document_prior
from mm_retriever.ranking.hydrate import Hydrator
from mm_retriever.ranking.hydrate import pages_where as pages_where  # the old hybrid.pages_where
from mm_retriever.ranking.relevance import apply_floor, check_min_score
from mm_retriever.store import DOCUMENTS, PAGES
from mm_retriever.store.filters import (
    DOCUMENT_COLUMNS,
    MATCH_NOTHING,
    PAGE_COLUMNS,
    and_where,
    regex_any,
    split_filters,
    where_clause,
)
from mm_retriever.types import FusedHit, LegHit, RetrievedPage

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger("mm_retriever")


# Weight of the document prior (``ranking.document_prior``, whole-document BM25) by default.
# On the whole dev set, with financial-term expansion and reference pinning on, weight 0.5 lifts
# corpus-wide nDCG@5 from 0.626 to 0.634 (paired randomisation p = 0.019; both dev halves gain:
# A 0.620 -> 0.634, B 0.632 -> 0.634); 0.25-1.0 all gain (a plateau); the page-vote prior gains
# less and not significantly (benchmarks/results/mmlongbench-dev/quality/question-handling-*).
# Within one document it changes nothing. Pass ``document_prior=0`` to turn it off.
DEFAULT_DOCUMENT_PRIOR = 0.5

# The filing prior (``mm_retriever.ranking.filing_prior``): the filing the question names
# (company, fiscal year) and the statement pages it needs. Weights 3 (filing) and 5 (section):
# financebench-dev, default hybrid on 18 of 36 filings: 0.576 -> 0.918 within-doc, 0.181 ->
# 0.861 corpus-wide (all 42 questions on a text-layer BM25 proxy: 0.272/0.096 -> 0.895/0.868);
# mmlongbench-dev +0.007 / +0.008 (n.s.; filings slice +0.046 / +0.049), no grid setting
# significantly worse (benchmarks/README.md, "Filings"). ``filing_prior=None`` turns it off.
DEFAULT_FILING_PRIOR = FilingPrior(3.0, 5.0, top_documents=2)


class PreparedQuery(Query):
    """A query as the legs see it (cleaned and expanded); preparing it again changes nothing."""


_leg_pool_lock = threading.Lock()
_leg_pool_instance: ThreadPoolExecutor | None = None


def _leg_pool() -> ThreadPoolExecutor:
    """The threads legs of a query run on (shared by every retriever of the process)."""
    global _leg_pool_instance
    with _leg_pool_lock:
        if _leg_pool_instance is None:
            _leg_pool_instance = ThreadPoolExecutor(8, thread_name_prefix="mm-retriever-leg")
        return _leg_pool_instance


class HybridRetriever:
    """Multimodal page retrieval over a ``MultimodalIndex``: legs -> fusion -> pages.

    ``fusion``: a Fusion, a registry name (``"rrf"``, ``"weighted"``) or None (the index's).
    ``legs``: the leg names to use (default all). ``weights``: per-leg fusion weights, over the
    legs' configured ``weight``. ``candidates``: hits asked from each leg before fusion.
    ``max_figures``: matched figure crops attached per page. ``clean_query``: drop sentences
    that only tell the answering LLM how to format its answer ("Round your answer to two
    decimals.") before the legs see the text (``mm_retriever.query.query_text``). ``expand_query``:
    append the line items of the financial metrics the question names ("current ratio" ->
    "total current assets total current liabilities balance sheets";
    ``mm_retriever.query.query_expansion``). ``pin_references``: when the question names a figure,
    table or section ("In Figure 5, ..."), the pages of the best-ranked document where that
    caption or numbered heading stands come first (``mm_retriever.query.references``).
    ``document_prior``: a :class:`~.document_prior.DocumentPrior`, its weight, or
    None/0 for none; when the pages come from several documents it re-ranks them by how well
    each whole document matches the question (``mm_retriever.ranking.document_prior``).
    ``min_score``: the relevance floor of every ``retrieve`` (per call: ``min_score=``): hits
    whose calibrated ``confidence`` is lower are dropped (``mm_retriever.ranking.relevance``).
    ``filing_prior``: a :class:`~mm_retriever.ranking.filing_prior.FilingPrior` or None; prefers
    the filing the question names (company, fiscal year, form) and the pages of the statements
    it names or needs (balance sheet, income statement, cash flows), as read at ingest.
    """

    def __init__(
        self,
        index: MultimodalIndex,
        *,
        fusion: Fusion | str | None = None,
        legs: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
        candidates: int = 50,
        max_figures: int = 3,
        include_images: bool = True,
        write_images: bool = True,
        clean_query: bool = True,
        expand_query: bool = True,
        pin_references: bool = True,
        document_prior: DocumentPrior | float | None = DEFAULT_DOCUMENT_PRIOR,
        min_score: float | None = None,
        filing_prior: FilingPrior | None = DEFAULT_FILING_PRIOR,
    ) -> None:
        self.index = index
        self.min_score = check_min_score(min_score)
        available = list(index.legs)
        if not legs:  # None or empty: every leg
            legs = available
        unknown = [n for n in legs if n not in index.legs]
        if unknown:
            skipped = f" (skipped: {', '.join(index.skipped_legs)})" if index.skipped_legs else ""
            raise ValueError(
                f"unknown leg(s) {unknown}; this index has {', '.join(available)}{skipped}"
            )
        self.leg_names = list(legs)
        self.candidates = int(candidates)
        self.max_figures = int(max_figures)
        self.include_images = include_images
        self.write_images = write_images
        self.clean_query = clean_query
        self.expand_query = expand_query
        self.pin_references = pin_references
        self.fusion = self._make_fusion(fusion, weights)
        if isinstance(document_prior, int | float):  # a weight: the default (BM25) prior
            document_prior = DocumentPrior(document_prior) if document_prior > 0 else None
        self.document_prior = document_prior
        self.filing_prior = FilingPrior(**filing_prior.config()) if filing_prior else None

    def over_legs(self, legs: Sequence[str]) -> HybridRetriever:
        """This retriever with every setting kept (fusion, query handling, reference pinning,
        document prior, ...) over ``legs`` only, e.g. the legs that can search by image."""
        unknown = [n for n in legs if n not in self.index.legs]
        if unknown or not legs:
            raise ValueError(
                f"unknown leg(s) {unknown}; this index has {', '.join(self.index.legs)}"
            )
        other = copy.copy(self)
        other.leg_names = list(legs)
        return other

    def _make_fusion(
        self, fusion: Fusion | str | None, weights: Mapping[str, float] | None
    ) -> Fusion:
        if fusion is not None and not isinstance(fusion, str):
            return fusion
        spec = self.index.config.fusion
        options = dict(spec.options) if fusion is None or fusion == spec.name else {}
        name = spec.name if fusion is None else fusion
        merged = {s.leg_name: s.weight for s in self.index.config.legs}
        merged.update(options.get("weights") or {})
        merged.update(weights or {})
        options["weights"] = {n: w for n, w in merged.items() if n in self.leg_names}
        return registry.fusions.create(name, **options)

    # ---------------------------------------------------------------- legs
    def prepare(self, query: Query) -> Query:
        """The query the legs see: answer-format instructions removed when ``clean_query``,
        financial metrics' line items appended when ``expand_query``."""
        if isinstance(query, PreparedQuery) or not query.text:
            return query
        text = query.text
        if self.clean_query:
            text = retrieval_text(text)
        if self.expand_query:
            text = expand_financial_terms(text)
        return PreparedQuery(text=text, image=query.image)

    def where(self, filters: Mapping[str, Any] | None) -> str | None:
        """The page-level where-clause for structured ``filters`` (document fields resolved)."""
        page_f, doc_f = split_filters(filters)
        where = where_clause(page_f, PAGE_COLUMNS)
        if doc_f:
            ids = self.index.store.query(
                DOCUMENTS, where_clause(doc_f, DOCUMENT_COLUMNS), ["doc_id"]
            ).column("doc_id")
            if len(ids) == 0:
                return MATCH_NOTHING
            where = and_where(where, where_clause({"doc_id": ids.to_pylist()}, PAGE_COLUMNS))
        return where

    def leg_hits(
        self,
        query: str | Image.Image | Query,
        k: int,
        filters: Mapping[str, Any] | None = None,
    ) -> dict[str, list[LegHit]]:
        """Each leg's page ranking (best first, at most ``k``) for ``query``."""
        return self._leg_hits(self.prepare(Query.of(query)), k, self.where(filters))

    def _leg_hits(self, q: Query, k: int, where: str | None) -> dict[str, list[LegHit]]:
        """``leg_hits`` for a prepared query and its compiled filters."""
        if where == MATCH_NOTHING:
            return {name: [] for name in self.leg_names}
        store = self.index.store
        legs = [(name, self.index.legs[name]) for name in self.leg_names]
        if len(legs) <= 1:
            return {name: leg.retrieve(store, q, k, where) for name, leg in legs}
        # legs wait mostly on LanceDB, ONNX Runtime or torch (the GIL released): run them together
        futures = {name: _leg_pool().submit(leg.retrieve, store, q, k, where) for name, leg in legs}
        return {name: future.result() for name, future in futures.items()}

    # ------------------------------------------------------------ retrieve
    def retrieve(
        self,
        query: str | Image.Image | Query,
        k: int = 5,
        *,
        filters: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[RetrievedPage]:
        """The ``k`` best pages for ``query`` (text, a PIL image, or a Query with both), each
        with its ``confidence``; those under ``min_score`` (default: the retriever's) dropped."""
        legs = {name: self.index.legs[name] for name in self.leg_names}
        k = check_search(Query.of(query), k, filters, legs)  # mm_retriever.limits
        floor = self.min_score if min_score is None else check_min_score(min_score)
        q = self.prepare(Query.of(query))  # once: the legs and the document prior share it
        where = self.where(filters)  # once: the legs and reference pinning share it
        with self.index.store.reading():  # a damaged table: IndexCorruptError naming it
            doc_scores = self._document_scores_early(q, filters)  # runs while the legs run
            filed = None  # the filing fields, (re)read while the legs run
            if self.filing_prior is not None and q.text:
                filed = _leg_pool().submit(self.filing_prior.index, self.index.store)
            hits = self._leg_hits(q, max(k, self.candidates), where)
            fused = self.fusion.fuse(hits, sum(len(h) for h in hits.values()))
            fused = self.rerank_documents(q, fused, doc_scores)
            fused = self.rerank_filings(
                q, fused, filed.result() if filed is not None else None, filters=filters
            )
            fused = self._pin_referenced(q, fused, where)
            return apply_floor(self.hydrate(fused, k), floor, legs)

    def _document_scores_early(
        self, query: Query, filters: Mapping[str, Any] | None
    ) -> Future[dict[str, float]] | None:
        """The document prior's scores, started on the leg threads when they need only the
        query text, and the search can span documents (not one ``doc_id`` filter)."""
        prior = self.document_prior
        if prior is None or prior.needs_pages or not query.text:
            return None
        doc_filter = filters.get("doc_id") if isinstance(filters, Mapping) else None
        if isinstance(doc_filter, str) or (isinstance(doc_filter, list) and len(doc_filter) == 1):
            return None
        return _leg_pool().submit(prior.scores, self.index.store, query.text)

    def rerank_filings(
        self,
        query: Query,
        fused: Sequence[FusedHit],
        fields: FilingIndex | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> list[FusedHit]:
        """``fused`` re-ranked by the filing prior (unchanged without one or without text);
        ``fields``: the prior's filing fields when already read; with a ``page_index`` filter
        no page joins that the legs did not return."""
        if self.filing_prior is None or not query.text:
            return list(fused)
        add_pages = not (isinstance(filters, Mapping) and "page_index" in filters)
        return self.filing_prior.rerank(
            self.index.store, query.text, fused, fields, add_pages=add_pages
        )

    def rerank_documents(
        self,
        query: Query,
        fused: Sequence[FusedHit],
        doc_scores: Future[dict[str, float]] | None = None,
    ) -> list[FusedHit]:
        """``fused`` re-ranked by the document prior (unchanged without one, without query text,
        or when every page comes from one document). ``query`` is the prepared query;
        ``doc_scores``: the prior's ``scores`` already started (``_document_scores_early``)."""
        prior = self.document_prior
        if prior is None or not query.text or len({h.doc_id for h in fused}) < 2:
            return list(fused)
        if doc_scores is not None:
            scores = prior.with_candidates(doc_scores.result(), fused)
        else:
            scores = prior.document_scores(self.index.store, query.text, fused)
        return apply_document_prior(fused, scores, prior.weight)

    def pin_referenced(
        self,
        query: Query,
        fused: Sequence[FusedHit],
        filters: Mapping[str, Any] | None = None,
    ) -> list[FusedHit]:
        """``fused`` with the pages that hold the captions or headings the question names
        (``mm_retriever.query.references``) first: pages of the best-ranked document only, in their
        fused order (pages no leg found after them, in page order); listings (a table of
        contents, a list of figures) are not pinned. Each pinned page gets
        ``leg_scores["reference"] = 1``; without references or such pages nothing changes."""
        return self._pin_referenced(query, fused, self.where(filters))

    def _pin_referenced(
        self, query: Query, fused: Sequence[FusedHit], where: str | None
    ) -> list[FusedHit]:
        """``pin_referenced`` with the filters already compiled (``where``)."""
        hits = list(fused)
        if not self.pin_references or not hits or not query.text:
            return hits
        refs = references(query.text)
        if not refs:
            return hits
        doc_id = hits[0].doc_id
        found = regex_any("text", [caption_regex(r) for r in refs])
        where = and_where(where, where_clause({"doc_id": doc_id}, PAGE_COLUMNS))
        rows = self.index.store.query(PAGES, and_where(where, found), ["page_index", "text"])
        pinned = sorted(  # a table of contents or list of figures holds every caption: skipped
            int(r["page_index"])
            for r in rows.to_pylist()
            if not any(
                matches(ref, r["text"] or "") and is_listing(ref, r["text"] or "") for ref in refs
            )
        )
        if not pinned:
            return hits
        by_key = {h.key: h for h in hits}
        order = {h.key: i for i, h in enumerate(hits)}
        keys = sorted(((doc_id, p) for p in pinned), key=lambda key: order.get(key, len(hits)))
        top = max(h.score for h in hits)
        first = []
        for i, key in enumerate(keys):
            hit = by_key.get(key) or FusedHit(doc_id, key[1], 0.0)
            hit.score = top + 1.0 - i / (len(keys) + 1)  # above every other page, in order
            hit.leg_scores["reference"] = 1.0
            first.append(hit)
        moved = set(keys)
        return first + [h for h in hits if h.key not in moved]

    async def aretrieve(
        self,
        query: str | Image.Image | Query,
        k: int = 5,
        *,
        filters: Mapping[str, Any] | None = None,
        min_score: float | None = None,
    ) -> list[RetrievedPage]:
        return await asyncio.to_thread(
            self.retrieve, query, k, filters=filters, min_score=min_score
        )

    # ------------------------------------------------------------- hydrate
    def hydrate(self, fused: Sequence[FusedHit], k: int) -> list[RetrievedPage]:
        """RetrievedPages for the first ``k`` committed pages of ``fused`` (a ``Hydrator``), with
        what the filing prior read at ingest (``filing``, ``section``)."""
        pages = Hydrator(
            self.index,
            max_figures=self.max_figures,
            include_images=self.include_images,
            write_images=self.write_images,
        ).hydrate(fused, k)
        if self.filing_prior is not None:
            self.filing_prior.describe(self.index.store, pages)
        return pages
