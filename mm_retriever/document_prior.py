"""Document-aware ranking for corpus-wide search: score documents as wholes, then pages.

Questions name companies, products, years and report titles, so the right *document* is often
easier to find than the right page. :class:`DocumentPrior` scores every candidate document for a
query, in one of two ways:

- ``source="pages"`` (hierarchical): a document scores the sum of the fused scores of its pages
  among the top ``top_pages`` fused pages, so a document with several good pages beats one lucky
  page elsewhere. Nothing extra is indexed or computed.
- ``source="bm25"``: a BM25 index with one row per document (its title, file name and the text
  of all its pages; in memory, rebuilt when the pages table changes).

:func:`apply_document_prior` (in :mod:`mm_retriever.fusion`) then adds
``weight * z(document score)`` to each fused page's z-scored score. Within one document the prior
is the same for every page and changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from mm_retriever.retrievers.bm25 import fold_ascii
from mm_retriever.store import DOCUMENTS, PAGES

if TYPE_CHECKING:
    import bm25s

    from mm_retriever.store import LanceDBStore
    from mm_retriever.types import FusedHit


@dataclass
class _DocCorpus:
    version: int
    doc_ids: list[str]
    bm25: bm25s.BM25 | None


class DocumentPrior:
    """Document scores for a document prior: from the fused pages or a document-level BM25.

    ``weight``: how much a document's z-scored score counts against the page's z-scored fused
    score (0 turns the prior off). ``source``: ``"pages"`` or ``"bm25"`` (module docstring).
    ``top_pages``: fused pages that vote for their document (``pages``). ``title_boost``: how
    many times the title and file name are repeated in a document's BM25 text (``bm25``).
    """

    def __init__(
        self,
        weight: float = 0.5,
        *,
        source: Literal["pages", "bm25"] = "pages",
        top_pages: int = 20,
        title_boost: int = 3,
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
        self._corpus: _DocCorpus | None = None
        self._lock = threading.Lock()

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
        tbl = store.table(PAGES)
        if tbl is None:
            return None
        version = int(tbl.version)
        with self._lock:
            if self._corpus is None or self._corpus.version != version:
                self._corpus = self._build(store, tbl, version)
            return self._corpus

    def _build(self, store: LanceDBStore, tbl: object, version: int) -> _DocCorpus:
        import bm25s

        pages = store.query(PAGES, None, ["doc_id", "page_index", "text"]).to_pylist()
        docs = store.query(DOCUMENTS, None, ["doc_id", "source", "title"]).to_pylist()
        heads = {
            d["doc_id"]: f"{d.get('title') or ''} {_file_words(d.get('source') or '')}"
            for d in docs
        }
        texts: dict[str, list[str]] = {}
        for p in sorted(pages, key=lambda r: (r["doc_id"], r["page_index"])):
            texts.setdefault(p["doc_id"], []).append(p["text"] or "")
        doc_ids = sorted(set(texts) | set(heads))
        corpus = [
            " ".join([heads.get(d, "")] * self.title_boost + texts.get(d, [])) for d in doc_ids
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
        """Each candidate document's score for the query ``text`` with fused pages ``fused``."""
        if self.source == "pages":
            return page_votes(fused, self.top_pages)
        return self.scores(store, text)

    def scores(self, store: LanceDBStore, text: str) -> dict[str, float]:
        """BM25 score of every document for ``text`` (empty when nothing can be scored)."""
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


def _file_words(source: str) -> str:
    """A file name as words: ``NIKE_2021_10K.pdf`` -> ``NIKE 2021 10K``."""
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return " ".join("".join(c if c.isalnum() else " " for c in stem).split())
