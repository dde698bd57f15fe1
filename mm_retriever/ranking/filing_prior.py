"""Filing-aware ranking: prefer the filing the question names, then the statement pages it needs.

At ingest every document gets its filing fields (``filings`` table: company, form, fiscal year,
quarter; :mod:`mm_retriever.ingest.filing`) and every page its section (``page_sections``:
income statement, balance sheet, cash flows, notes, MD&A, ...; :mod:`mm_retriever.ingest.
page_sections`), both read from the page text the index stores. At query time
:class:`FilingPrior` reads what the question asks (:mod:`mm_retriever.query.filing_question`) and
re-ranks the fused pages::

    score = z(page score) + weight * company * (1 + period) + section_weight * [section wanted]

``company`` (0-1) is how well the question names the filing's company, ``period`` (0-1) how
well its fiscal year / quarter fits the latest year the question names (a later filing, which
repeats the year as a comparative column, counts half): a soft prior, the same for every page
of one document, so within one document only the section term moves pages. The pages of the
wanted statements of the ``top_documents`` candidate documents that the question names best (by
the filing term, then by their best page) join the candidates when no leg found them.
Questions that name no statement, year or company of the index are unchanged;
so are indexes without these tables (``mm-retriever migrate`` adds them; the writers fill them
with :mod:`mm_retriever.index.filing_fields`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mm_retriever.query.filing_question import (
    FilingQuestion,
    company_score,
    period_score,
    read_question,
)
from mm_retriever.store.schema import FILINGS, PAGE_SECTIONS
from mm_retriever.types import FusedHit

if TYPE_CHECKING:
    from mm_retriever.ingest.filing import FilingFields
    from mm_retriever.store import LanceDBStore
    from mm_retriever.types import RetrievedPage


@dataclass
class FilingIndex:
    """The filing fields and page sections of an index, in memory."""

    filings: dict[str, FilingFields]
    sections: dict[str, dict[int, tuple[str, str]]]  # doc_id -> page -> (section, title)
    version: tuple[int, int] = (-1, -1)

    def pages_of(self, doc_id: str, wanted: Iterable[str]) -> list[int]:
        """The pages of ``doc_id`` in one of the ``wanted`` sections, in page order."""
        wanted = set(wanted)
        return sorted(p for p, (s, _) in self.sections.get(doc_id, {}).items() if s in wanted)

    def section(self, doc_id: str, page_index: int) -> tuple[str, str]:
        return self.sections.get(doc_id, {}).get(page_index, ("", ""))


class FilingPrior:
    """Re-ranks fused pages by the filing and the statements a question names (module doc).

    ``weight``: the filing term's weight (0: off); ``section_weight``: the wanted-section
    term's (0: off); ``top_documents``: documents whose wanted statement pages join the
    candidates (0: none).
    """

    def __init__(
        self, weight: float = 3.0, section_weight: float = 5.0, *, top_documents: int = 2
    ) -> None:
        if weight < 0 or section_weight < 0:
            raise ValueError("filing prior weights must be >= 0")
        self.weight = float(weight)
        self.section_weight = float(section_weight)
        self.top_documents = max(0, int(top_documents))
        self._cache: FilingIndex | None = None
        self._lock = threading.Lock()

    def index(self, store: LanceDBStore) -> FilingIndex:
        """The store's filing fields and sections (re-read when either table changes)."""
        f_tbl, s_tbl = store.reader(FILINGS), store.reader(PAGE_SECTIONS)
        version = (
            int(f_tbl.version) if f_tbl is not None else -1,
            int(s_tbl.version) if s_tbl is not None else -1,
        )
        with self._lock:
            if self._cache is None or self._cache.version != version:
                self._cache = load_filing_index(store)
                self._cache.version = version
            return self._cache

    def rerank(
        self,
        store: LanceDBStore,
        text: str,
        fused: Sequence[FusedHit],
        fields: FilingIndex | None = None,
        *,
        add_pages: bool = True,
    ) -> list[FusedHit]:
        """``fused`` re-ranked for the question ``text`` (unchanged when nothing applies);
        ``fields``: ``index(store)`` when already read (the retriever reads it while the legs
        run); ``add_pages``: whether wanted statement pages no leg found may join (False when a
        page filter narrows the search)."""
        hits = list(fused)
        if not hits or not text or (self.weight == 0 and self.section_weight == 0):
            return hits
        fi = fields if fields is not None else self.index(store)
        if not fi.filings and not fi.sections:
            return hits
        return rerank(hits, fi, text, read_question(text), self, add_pages=add_pages)

    def describe(self, store: LanceDBStore, pages: Sequence[RetrievedPage]) -> None:
        """Set each page's ``filing`` label and ``section`` from the fields read at ingest."""
        fi = self.index(store)
        for page in pages:
            fields = fi.filings.get(page.doc_id)
            page.filing = fields.label() if fields is not None else ""
            page.section = fi.section(page.doc_id, page.page_index)[0]

    def config(self) -> dict[str, float | int]:
        return {
            "weight": self.weight,
            "section_weight": self.section_weight,
            "top_documents": self.top_documents,
        }

    def __repr__(self) -> str:
        return f"FilingPrior(weight={self.weight}, section_weight={self.section_weight})"


def filing_scores(
    text: str, question: FilingQuestion, filings: dict[str, FilingFields], doc_ids: Iterable[str]
) -> dict[str, float]:
    """``company * (1 + period)`` of each document in ``doc_ids`` with filing fields."""
    out = {}
    for d in doc_ids:
        f = filings.get(d)
        if f is None:
            continue
        c = company_score(text, f.company, tuple(f.tickers))
        if c > 0:
            out[d] = c * (1.0 + period_score(question, f.fiscal_year, f.quarter, f.form))
    return out


def rerank(
    hits: list[FusedHit],
    fi: FilingIndex,
    text: str,
    question: FilingQuestion,
    prior: FilingPrior,
    *,
    add_pages: bool = True,
) -> list[FusedHit]:
    """The re-ranking of :meth:`FilingPrior.rerank` on a loaded :class:`FilingIndex`."""
    if not hits:
        return hits
    docs = list(dict.fromkeys(h.doc_id for h in hits))
    f_scores = filing_scores(text, question, fi.filings, docs) if prior.weight else {}
    wanted = set(question.statements) if prior.section_weight else set()
    if not f_scores and not wanted:
        return hits
    z = _zscores([h.score for h in hits])
    floor = min(z)
    by_key = {h.key: (h, zi) for h, zi in zip(hits, z, strict=True)}

    def doc_bonus(d: str) -> float:
        return prior.weight * f_scores.get(d, 0.0)

    if wanted and prior.top_documents and add_pages:  # the best documents' statements join:
        best_z: dict[str, float] = {}  # the filings the question names best, then by pages
        for h, zi in by_key.values():
            best_z[h.doc_id] = max(zi, best_z.get(h.doc_id, zi))
        best = sorted(docs, key=lambda d: (-f_scores.get(d, 0.0), -best_z[d], d))
        for d in best[: prior.top_documents]:
            for p in fi.pages_of(d, wanted):
                if (d, p) not in by_key:
                    by_key[(d, p)] = (FusedHit(d, p, 0.0), floor)
    out = []
    for h, zi in by_key.values():
        section = fi.section(h.doc_id, h.page_index)[0]
        bonus = doc_bonus(h.doc_id)
        if h.doc_id in f_scores:
            h.leg_scores["filing"] = f_scores[h.doc_id]
        if section in wanted:
            bonus += prior.section_weight
            h.leg_scores["section"] = 1.0
        h.score = zi + bonus
        out.append(h)
    out.sort(key=lambda h: (-h.score, h.doc_id, h.page_index))
    return out


def _zscores(values: Sequence[float]) -> list[float]:
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / n) ** 0.5
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


# ------------------------------------------------------------------ store
def load_filing_index(store: LanceDBStore) -> FilingIndex:
    """Every filing row and page section of ``store`` (empty without the tables)."""
    from mm_retriever.ingest.filing import FilingFields

    filings: dict[str, FilingFields] = {}
    sections: dict[str, dict[int, tuple[str, str]]] = {}
    f_tbl, s_tbl = store.reader(FILINGS), store.reader(PAGE_SECTIONS)
    if f_tbl is not None:
        for r in f_tbl.to_arrow().to_pylist():
            doc_id = r.pop("doc_id")
            r["tickers"] = list(r.get("tickers") or [])
            filings[doc_id] = FilingFields(**r)
    if s_tbl is not None:
        for r in s_tbl.to_arrow().to_pylist():
            sections.setdefault(r["doc_id"], {})[int(r["page_index"])] = (
                r["section"],
                r["title"] or "",
            )
    return FilingIndex(filings, sections)
