"""BM25 leg: keyword search over page text (or chunks), stop words and Snowball stemming.

Two engines (``engine``):

- ``"lancedb"`` (default): LanceDB's full-text index on the leg's table, stored with it. A writer
  builds it after the first write and keeps it current (``refresh``); LanceDB searches rows
  added since then with a flat scan next to the index and masks deleted rows, and ``optimize``
  folds new rows in. Opening an index loads nothing up front, so the first query is fast at any
  size, and the index lives wherever the table does (local folder or object store).
- ``"bm25s"``: the rows held in memory as one bm25s index, built on first use and rebuilt when
  the table's version changes (appends and deletes both change BM25 statistics). Honours
  ``k1``, ``b`` and ``method``; costs a full tokenisation of the corpus in every process.
  Also the fallback of ``"lancedb"`` for an index written before the full-text index existed
  (until its next write or ``optimize``: readers never write).

Both tokenise alike: lower case, accents folded, the same stop word list, Snowball stemming.
Statistics are corpus-wide; filters restrict which rows may be returned.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from mm_retriever.legs.base import LegBase, LegOptions, rank_pages
from mm_retriever.legs.text import page_chunks
from mm_retriever.protocols import Query
from mm_retriever.store.snapshot import VersionedSnapshot
from mm_retriever.store.table_indexes import IndexPresence
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    import bm25s

    from mm_retriever.store import LanceDBStore
    from mm_retriever.store.reader import TableReader

log = logging.getLogger("mm_retriever")

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("chunk_index", pa.int32()),  # -1 for whole-page rows
        ("text", pa.string()),
    ]
)


@dataclass
class _Corpus:
    version: int
    doc_ids: list[str]
    page_index: np.ndarray
    chunk_index: np.ndarray
    texts: list[str]
    bm25: bm25s.BM25 | None  # None when no row has an indexable token
    row_of: dict[tuple[str, int, int], int]


def fold_ascii(text: str) -> str:
    """Accents removed (``café`` -> ``cafe``), so either spelling matches."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


ENGINES = ("lancedb", "bm25s")
SINGLE_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"


class BM25Options(LegOptions):
    """Options of the BM25 leg (see ``BM25Retriever``)."""

    unit: Literal["page", "chunk"] = "page"
    language: str = "English"
    stem: bool = True
    remove_stop_words: bool = True
    candidates_per_page: int = 4
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    engine: Literal["lancedb", "bm25s"] = "lancedb"


class BM25Retriever(LegBase):
    """Keyword retrieval (BM25) over whole pages (``unit="page"``) or chunks (``"chunk"``).

    With chunks, a page scores its best chunk. Tokenisation: lower case, accents folded, stop
    words removed and Snowball stemming for ``language``. ``engine``: ``"lancedb"`` (a
    persistent full-text index in the table, BM25 with k1=1.2, b=0.75) or ``"bm25s"`` (in
    memory; ``k1``, ``b`` and ``method`` are bm25s's parameters, Lucene's variant by default).
    """

    kind = "bm25"
    Options = BM25Options
    matched_kind = "chunk"  # what LegHit.matched indexes

    def __init__(
        self,
        unit: Literal["page", "chunk"] = "page",
        *,
        name: str = "bm25",
        device: str | None = None,
        language: str = "English",
        stem: bool = True,
        remove_stop_words: bool = True,
        candidates_per_page: int = 4,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        engine: Literal["lancedb", "bm25s"] = "lancedb",
    ) -> None:
        super().__init__(name, device)
        if unit not in ("page", "chunk"):
            raise ValueError(f"BM25 unit must be 'page' or 'chunk', got {unit!r}")
        if engine not in ENGINES:
            raise ValueError(f"BM25 engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.engine = engine
        self.unit = unit
        self.language = language
        self.stem = stem
        self.remove_stop_words = remove_stop_words
        self.candidates_per_page = max(1, int(candidates_per_page))
        self.k1 = float(k1)
        self.b = float(b)
        self.method = method
        self._stemmer = _stemmer(language) if stem else None
        self._stopwords: str | list[str] = _stopwords(language) if remove_stop_words else []
        self._snapshot = VersionedSnapshot(self._build)
        self._lock = threading.Lock()
        self._fts = IndexPresence("text", "fts")
        self._warned_fallback = False

    def schema(self) -> pa.Schema:
        return SCHEMA

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        if self.unit == "page":
            return [
                {"doc_id": p.doc_id, "page_index": p.page_index, "chunk_index": -1, "text": p.text}
                for p in pages
                if p.text.strip()
            ]
        return [
            {"doc_id": p.doc_id, "page_index": p.page_index, "chunk_index": i, "text": t}
            for p in pages
            for i, t in page_chunks(p)
        ]

    # ----------------------------------------------------------------- index
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """The terms BM25 sees for each text (documents and queries alike)."""
        import bm25s

        with self._lock:  # a PyStemmer instance is not thread-safe
            return bm25s.tokenize(
                [fold_ascii(t) for t in texts],
                lower=True,
                stopwords=self._stopwords,
                stemmer=self._stemmer,
                return_ids=False,
                show_progress=False,
            )

    # ----------------------------------------------------- full-text index
    def fts_options(self) -> dict[str, Any]:
        """LanceDB ``FTS`` tokenizer options equal to this leg's bm25s tokenisation."""
        stop_words = list(_stopword_list(self._stopwords)) if self.remove_stop_words else []
        return {
            "language": self.language.capitalize(),
            "stem": self.stem,
            # bm25s keeps tokens of two or more word characters: one-character tokens go too
            "remove_stop_words": True,
            "custom_stop_words": stop_words + list(SINGLE_CHARACTERS),
            "ascii_folding": True,
            "lower_case": True,
            "with_position": False,
        }

    def refresh(self, store: LanceDBStore) -> None:
        """After a write (writer, under the lock): build the full-text index, or fold new rows
        into it (``engine="lancedb"``; the bm25s engine keeps nothing on disk)."""
        if self.engine != "lancedb":
            return
        store.ensure_fts_index(self.table, "text", self.fts_options())

    def has_fts_index(self, store: LanceDBStore) -> bool:
        """Whether the table has a full-text index (looked up once per table version)."""
        return self._fts(store.reader(self.table))

    def _uses_fts(self, store: LanceDBStore) -> bool:
        if self.engine != "lancedb":
            return False
        if self.has_fts_index(store):
            return True
        if not self._warned_fallback and store.count(self.table):
            self._warned_fallback = True
            log.warning(
                "leg '%s': the index has no full-text index yet (written by an older "
                "mm-retriever); searching an in-memory BM25 index until the next write or "
                "`mm-retriever compact` builds it",
                self.name,
            )
        return False

    @property
    def _corpus(self) -> _Corpus | None:
        """The in-memory index built last (None: none built in this process)."""
        return self._snapshot.value

    def _load(self, store: LanceDBStore) -> _Corpus | None:
        """The in-memory index of the table's current rows (rebuilt when the table changed)."""
        return self._snapshot.get(store.reader(self.table))

    def _build(self, tbl: TableReader, version: int) -> _Corpus:
        import bm25s

        data = tbl.to_arrow(["doc_id", "page_index", "chunk_index", "text"])
        doc_ids = data.column("doc_id").to_pylist()
        page_index = np.asarray(data.column("page_index").to_pylist(), dtype=np.int64)
        chunk_index = np.asarray(data.column("chunk_index").to_pylist(), dtype=np.int64)
        texts = data.column("text").to_pylist()
        tokens = self.tokenize(texts)
        model = None
        if any(tokens):
            model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
            model.index(tokens, show_progress=False)
        return _Corpus(
            version=version,
            doc_ids=doc_ids,
            page_index=page_index,
            chunk_index=chunk_index,
            texts=texts if self.unit == "chunk" else [],
            bm25=model,
            row_of={
                (d, int(p), int(c)): i
                for i, (d, p, c) in enumerate(zip(doc_ids, page_index, chunk_index, strict=True))
            },
        )

    def scores(self, store: LanceDBStore, query: Query) -> tuple[_Corpus, np.ndarray] | None:
        """BM25 score of ``query`` for every row of the table (0 where no term matches)."""
        corpus = self._load(store)
        if corpus is None or corpus.bm25 is None or not query.text:
            return None
        terms = [t for t in self.tokenize([query.text])[0] if t in corpus.bm25.vocab_dict]
        if not terms:
            return None
        return corpus, np.asarray(corpus.bm25.get_scores(terms), dtype=np.float32)

    def _allowed_rows(self, store: LanceDBStore, corpus: _Corpus, where: str) -> np.ndarray:
        allowed = store.query(self.table, where, ["doc_id", "page_index", "chunk_index"])
        keys = zip(
            allowed.column("doc_id").to_pylist(),
            allowed.column("page_index").to_pylist(),
            allowed.column("chunk_index").to_pylist(),
            strict=True,
        )
        found = (corpus.row_of.get(key) for key in keys)
        return np.asarray(sorted(i for i in found if i is not None), dtype=np.int64)

    # ---------------------------------------------------------------- search
    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        if k <= 0 or not query.text:
            return []
        if self._uses_fts(store):
            return self._retrieve_fts(store, query.text, k, where)
        scored = self.scores(store, query)
        if scored is None:
            return []
        corpus, scores = scored
        rows = self._allowed_rows(store, corpus, where) if where else np.arange(scores.size)
        rows = rows[scores[rows] > 0]
        order = rows[np.argsort(-scores[rows], kind="stable")]
        per_page = 1 if self.unit == "page" else self.candidates_per_page
        limit = k * per_page
        while True:
            top = order[:limit]
            hits = rank_pages(
                (
                    (
                        corpus.doc_ids[i],
                        int(corpus.page_index[i]),
                        float(scores[i]),
                        int(corpus.chunk_index[i]) if corpus.chunk_index[i] >= 0 else None,
                        corpus.texts[i] if corpus.texts else "",
                    )
                    for i in top
                ),
                k,
            )
            if len(hits) >= k or limit >= order.size:
                return hits
            limit *= 2

    def _retrieve_fts(
        self, store: LanceDBStore, text: str, k: int, where: str | None
    ) -> list[LegHit]:
        """Top pages from LanceDB's full-text index (rows matching ``where`` only)."""
        tbl = store.reader(self.table)
        assert tbl is not None
        columns = ["doc_id", "page_index", "chunk_index", "_score"]
        if self.unit == "chunk":
            columns.append("text")
        per_page = 1 if self.unit == "page" else self.candidates_per_page
        limit = k * per_page
        while True:
            rows = tbl.text_search(text, "text", limit, columns, where).to_pylist()
            hits = rank_pages(
                (
                    (
                        r["doc_id"],
                        int(r["page_index"]),
                        float(r["_score"]),
                        int(r["chunk_index"]) if r["chunk_index"] >= 0 else None,
                        r.get("text") or "",
                    )
                    for r in rows
                ),
                k,
            )
            if len(hits) >= k or len(rows) < limit:
                return hits  # enough pages, or every matching row
            limit *= 2

    def config(self) -> dict[str, Any]:
        return self.options_dump(
            engine=self.engine,
            unit=self.unit,
            language=self.language,
            stem=self.stem,
            remove_stop_words=self.remove_stop_words,
            candidates_per_page=self.candidates_per_page,
            k1=self.k1,
            b=self.b,
            method=self.method,
        )


def _stemmer(language: str) -> Any:
    import Stemmer

    name = language.lower()
    if name not in Stemmer.algorithms():
        raise ValueError(
            f"no Snowball stemmer for language {language!r}; use one of "
            f"{', '.join(Stemmer.algorithms())}, or stem=False"
        )
    return Stemmer.Stemmer(name)


def _stopword_list(name: str | list[str]) -> list[str]:
    """The words of a bm25s stop word list (by the name bm25s knows it)."""
    if not isinstance(name, str):
        return list(name)
    from bm25s.tokenization import _infer_stopwords

    return list(_infer_stopwords(name))


#: the stop word lists bm25s has, by the names it knows them (bm25s.tokenization._infer_stopwords);
#: checked without importing bm25s (and scipy), which the LanceDB engine never needs at query time
BM25S_STOPWORDS = frozenset(
    (
        "english",
        "en",
        "english_plus",
        "en_plus",
        "german",
        "de",
        "dutch",
        "nl",
        "french",
        "fr",
        "spanish",
        "es",
        "portuguese",
        "pt",
        "italian",
        "it",
        "russian",
        "ru",
        "swedish",
        "sv",
        "norwegian",
        "no",
        "chinese",
        "zh",
        "turkish",
        "tr",
        "korean",
        "ko",
        "danish",
        "da",
    )
)


def _stopwords(language: str) -> str:
    """``language`` as bm25s names its stop word list (checked now, not at the first query)."""
    name = language.lower()
    if name not in BM25S_STOPWORDS:
        raise ValueError(
            f"no stop word list for language {language!r} in bm25s; pass remove_stop_words=False"
        )
    return name
