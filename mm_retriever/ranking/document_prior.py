"""Document-aware ranking for corpus-wide search: score documents as wholes, then pages.

Questions name companies, products, years and report titles, so the right *document* is often
easier to find than the right page. :class:`DocumentPrior` scores every candidate document for a
query, in one of two ways:

- ``source="pages"`` (hierarchical): a document scores the sum of the fused scores of its pages
  among the top ``top_pages`` fused pages, so a document with several good pages beats one lucky
  page elsewhere. Nothing extra is indexed or computed.
- ``source="bm25"`` (the default): BM25 over one text per document (its title and file name
  words three times, then the text of all its pages). Writers keep these texts in the
  ``document_text`` table with LanceDB's full-text index (``write_document_texts``,
  ``ensure_document_text_index``), so a query costs one index search at any corpus size. An
  index written before that table existed is scored from an in-memory BM25 built from its
  pages (rebuilt when the pages table changes; up to ``IN_MEMORY_MAX_PAGES`` pages, beyond
  which the prior is skipped with a warning until ``mm-retriever migrate`` adds the table).

:func:`apply_document_prior` (in :mod:`mm_retriever.ranking.fusion`) then adds
``weight * z(document score)`` to each fused page's z-scored score. Within one document the prior
is the same for every page and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from mm_retriever.legs.bm25 import BM25Retriever, fold_ascii
from mm_retriever.store import DOCUMENTS, PAGES
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause
from mm_retriever.store.schema import DOCUMENT_TEXT, DOCUMENT_TEXT_SCHEMA
from mm_retriever.store.snapshot import VersionedSnapshot
from mm_retriever.store.table_indexes import IndexPresence

if TYPE_CHECKING:
    import bm25s

    from mm_retriever.store import LanceDBStore
    from mm_retriever.types import FusedHit

log = logging.getLogger("mm_retriever")

#: how often a document's title and file name words stand in its text (they name the document)
TITLE_REPEATS = 3
#: an index without the ``document_text`` table is scored in memory up to this many pages
IN_MEMORY_MAX_PAGES = 50_000
#: documents asked from the full-text index per query (the rest score as "no match")
MAX_DOCUMENTS = 200


@dataclass
class _DocCorpus:
    version: int
    doc_ids: list[str]
    bm25: bm25s.BM25 | None


class DocumentPrior:
    """Document scores for a document prior: from the fused pages or a document-level BM25.

    ``weight``: how much a document's z-scored score counts against the page's z-scored fused
    score (0 turns the prior off). ``source``: ``"bm25"`` or ``"pages"`` (module docstring).
    ``top_pages``: fused pages that vote for their document (``pages``). ``title_boost``: how
    many times the title and file name are repeated in a document's in-memory BM25 text
    (``bm25`` on an index without the ``document_text`` table, whose texts repeat them
    ``TITLE_REPEATS`` times).
    """

    def __init__(
        self,
        weight: float = 0.5,
        *,
        source: Literal["pages", "bm25"] = "bm25",
        top_pages: int = 20,
        title_boost: int = TITLE_REPEATS,
        k1: float = 1.2,
        b: float = 0.75,
        language: str = "english",
    ) -> None:
        if weight < 0:
            raise ValueError(f"document prior weight must be >= 0, got {weight}")
        if source not in ("pages", "bm25"):
            raise ValueError(f"document prior source must be 'pages' or 'bm25', got {source!r}")
        self.weight = float(weight)
        self.source = source
        self.top_pages = max(1, int(top_pages))
        self.title_boost = max(0, int(title_boost))
        self.k1 = float(k1)
        self.b = float(b)
        self.language = language
        self._snapshot = VersionedSnapshot(self._build)
        self._has_fts = IndexPresence("text", "fts")
        self._warned = False

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s
        import Stemmer

        return bm25s.tokenize(
            [fold_ascii(t) for t in texts],
            lower=True,
            stopwords="en",
            stemmer=Stemmer.Stemmer(self.language),
            return_ids=False,
            show_progress=False,
        )

    def _load(self, store: LanceDBStore) -> _DocCorpus | None:
        return self._snapshot.get(store.reader(PAGES), store)

    def _build(self, tbl: object, version: int, store: LanceDBStore) -> _DocCorpus:
        import bm25s

        pages = store.query(PAGES, None, ["doc_id", "page_index", "text"]).to_pylist()
        docs = store.query(DOCUMENTS, None, ["doc_id", "source", "title"]).to_pylist()
        heads = {d["doc_id"]: (d.get("title") or "", d.get("source") or "") for d in docs}
        texts: dict[str, list[str]] = {}
        for p in sorted(pages, key=lambda r: (r["doc_id"], r["page_index"])):
            texts.setdefault(p["doc_id"], []).append(p["text"] or "")
        doc_ids = sorted(set(texts) | set(heads))
        corpus = [
            document_text(*heads.get(d, ("", "")), texts.get(d, []), repeats=self.title_boost)
            for d in doc_ids
        ]
        tokens = self._tokenize(corpus)
        model = None
        if any(tokens):
            model = bm25s.BM25(k1=self.k1, b=self.b)
            model.index(tokens, show_progress=False)
        return _DocCorpus(version, doc_ids, model)

    def document_scores(
        self, store: LanceDBStore, text: str, fused: Sequence[FusedHit]
    ) -> dict[str, float]:
        """Each candidate document's score for the query ``text`` with fused pages ``fused``
        (``bm25``: a document of ``fused`` that matches no query word scores 0)."""
        if self.source == "pages":
            return page_votes(fused, self.top_pages)
        return self.with_candidates(self.scores(store, text), fused)

    @property
    def needs_pages(self) -> bool:
        """Whether the scores depend on the fused pages (else they can be computed while the
        legs run: ``scores`` needs only the query text)."""
        return self.source == "pages"

    @staticmethod
    def with_candidates(scores: dict[str, float], fused: Sequence[FusedHit]) -> dict[str, float]:
        """``scores`` (``scores()``'s) plus 0 for each document of ``fused`` that matched no
        query word (nothing when no document matched)."""
        out = dict(scores)
        if out:
            for h in fused:
                out.setdefault(h.doc_id, 0.0)
        return out

    def scores(self, store: LanceDBStore, text: str) -> dict[str, float]:
        """BM25 scores of the documents that match ``text`` (empty when nothing can be scored):
        from the ``document_text`` full-text index when the index has one (the best
        ``MAX_DOCUMENTS``), else from an in-memory BM25 of every document."""
        if not text:
            return {}
        tbl = store.reader(DOCUMENT_TEXT)
        if self._has_fts(tbl):
            rows = tbl.text_search(text, "text", MAX_DOCUMENTS, ["doc_id", "_score"]).to_pylist()
            return {r["doc_id"]: float(r["_score"]) for r in rows}
        if store.count(PAGES) > IN_MEMORY_MAX_PAGES:
            if not self._warned:
                self._warned = True
                log.warning(
                    "document prior skipped: this index has no document_text table (written by "
                    "an older mm-retriever) and more than %d pages to score in memory; "
                    "`mm-retriever migrate --index ...` adds it",
                    IN_MEMORY_MAX_PAGES,
                )
            return {}
        return self._in_memory_scores(store, text)

    def _in_memory_scores(self, store: LanceDBStore, text: str) -> dict[str, float]:
        corpus = self._load(store)
        if corpus is None or corpus.bm25 is None or not text:
            return {}
        terms = [t for t in self._tokenize([text])[0] if t in corpus.bm25.vocab_dict]
        if not terms:
            return {}
        values = np.asarray(corpus.bm25.get_scores(terms), dtype=float)
        return dict(zip(corpus.doc_ids, values.tolist(), strict=True))

    def config(self) -> dict[str, float | int | str]:
        return {
            "weight": self.weight,
            "source": self.source,
            "top_pages": self.top_pages,
            "title_boost": self.title_boost,
            "k1": self.k1,
            "b": self.b,
            "language": self.language,
        }

    def __repr__(self) -> str:
        return f"DocumentPrior(weight={self.weight}, source={self.source!r})"


def page_votes(fused: Sequence[FusedHit], top: int = 20) -> dict[str, float]:
    """Sum of the fused scores of each document's pages among the first ``top`` of ``fused``
    (best first); documents without a page there are absent (they get the lowest prior)."""
    votes: dict[str, float] = {}
    for h in fused[:top]:
        votes[h.doc_id] = votes.get(h.doc_id, 0.0) + float(h.score)
    return votes


def document_text(
    title: str, source: str, page_texts: Sequence[str], *, repeats: int = TITLE_REPEATS
) -> str:
    """A document's BM25 text: title and file name words ``repeats`` times, then its pages'
    text in page order."""
    head = f"{title or ''} {_file_words(source or '')}".strip()
    return " ".join([head] * repeats + [t for t in page_texts if t])


def document_text_options() -> dict[str, object]:
    """Tokenizer of the ``document_text`` full-text index: the default BM25 leg's."""
    return BM25Retriever().fts_options()


def write_document_texts(store: LanceDBStore, documents: Sequence[tuple[str, str, str]]) -> int:
    """Write the ``document_text`` rows of ``documents`` ((doc_id, title, source) each) from
    their rows in ``pages`` (a writer's job, before the documents' commit). Returns rows."""
    if not documents:
        return 0
    ids = [d for d, _, _ in documents]
    rows = store.query(
        PAGES, where_clause({"doc_id": ids}, PAGE_COLUMNS), ["doc_id", "page_index", "text"]
    ).to_pylist()
    texts: dict[str, list[tuple[int, str]]] = {d: [] for d in ids}
    for r in rows:
        texts[r["doc_id"]].append((int(r["page_index"]), r["text"] or ""))
    out = [
        {"doc_id": d, "text": document_text(title, source, [t for _, t in sorted(texts[d])])}
        for d, title, source in documents
    ]
    return store.add(DOCUMENT_TEXT, out, DOCUMENT_TEXT_SCHEMA)


def ensure_document_text_index(store: LanceDBStore) -> bool:
    """Build (or fold new rows into) the full-text index of ``document_text`` (a writer's job).
    Returns True when the table's indexes changed."""
    return store.ensure_fts_index(DOCUMENT_TEXT, "text", document_text_options())


def backfill_document_texts(store: LanceDBStore, batch: int = 64) -> int:
    """Write the ``document_text`` rows of committed documents without one, ``batch``
    documents a write (``migrate``; under the writer lock). Returns rows written."""
    missing = missing_document_texts(store)
    return sum(
        write_document_texts(store, missing[start : start + batch])
        for start in range(0, len(missing), batch)
    )


def missing_document_texts(store: LanceDBStore) -> list[tuple[str, str, str]]:
    """(doc_id, title, source) of committed documents without a ``document_text`` row."""
    have = set()
    if store.reader(DOCUMENT_TEXT) is not None:
        have = set(store.query(DOCUMENT_TEXT, None, ["doc_id"]).column("doc_id").to_pylist())
    return [
        (d["doc_id"], d.get("title") or "", d.get("source") or "")
        for d in store.documents()
        if d["doc_id"] not in have
    ]


def _file_words(source: str) -> str:
    """A file name as words: ``NIKE_2021_10K.pdf`` -> ``NIKE 2021 10K``."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return " ".join("".join(c if c.isalnum() else " " for c in stem).split())
