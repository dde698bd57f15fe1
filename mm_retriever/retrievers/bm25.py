"""BM25 leg: LanceDB's native full-text index over page text (or chunks), English stemming.

The full-text index covers the rows present when it was built. After writes the index calls
``refresh(store)``, which rebuilds it whenever rows were added or deleted since, so BM25
statistics (document count, lengths) always describe exactly the rows in the table. A query
against a stale index (written by another process) rebuilds it first when the store is writable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from mm_retriever.protocols import Query
from mm_retriever.retrievers.base import LegBase, rank_pages
from mm_retriever.retrievers.text import page_chunks
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore

log = logging.getLogger("mm_retriever")

SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("chunk_index", pa.int32()),  # -1 for whole-page rows
        ("text", pa.string()),
    ]
)


class BM25Retriever(LegBase):
    """Keyword retrieval (BM25) over whole pages (``unit="page"``) or chunks (``"chunk"``).

    With chunks, a page scores its best chunk. Tokenisation: lower case, ASCII folding, stop
    words removed and Snowball stemming for ``language``.
    """

    kind = "bm25"
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
    ) -> None:
        super().__init__(name, device)
        if unit not in ("page", "chunk"):
            raise ValueError(f"BM25 unit must be 'page' or 'chunk', got {unit!r}")
        self.unit = unit
        self.language = language
        self.stem = stem
        self.remove_stop_words = remove_stop_words
        self.candidates_per_page = max(1, int(candidates_per_page))
        self._checked_version: int | None = None
        self._lock = threading.Lock()

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
    def _fts_config(self) -> Any:
        from lancedb.index import FTS

        return FTS(
            language=self.language,
            stem=self.stem,
            remove_stop_words=self.remove_stop_words,
            lower_case=True,
            ascii_folding=True,
        )

    def _index_name(self, tbl: Any) -> str | None:
        found = [i.name for i in tbl.list_indices() if list(i.columns) == ["text"]]
        return found[0] if found else None

    def _looks_stale(self, tbl: Any) -> bool:
        """For an index first seen in this process: missing, or rows it does not cover."""
        name = self._index_name(tbl)
        if name is None:
            return True
        stats = tbl.index_stats(name)
        return (
            stats is None
            or stats.num_unindexed_rows > 0
            or stats.num_indexed_rows != tbl.count_rows()
        )

    def refresh(self, store: LanceDBStore) -> None:
        """Make the full-text index describe exactly the table's current rows.

        Rebuilt when the table changed since this process last built or checked it (appends and
        deletes both change BM25 statistics), or, for an index first seen here, when it is missing
        or does not cover every row.
        """
        with self._lock:
            tbl = store.table(self.table)
            if tbl is None:
                return
            version = int(tbl.version)
            if version == self._checked_version:
                return
            first_look = self._checked_version is None
            if tbl.count_rows() and (not first_look or self._looks_stale(tbl)):
                tbl.create_index("text", config=self._fts_config(), replace=True)
            self._checked_version = int(tbl.version)

    def _ensure_fresh(self, store: LanceDBStore, tbl: Any) -> bool:
        if self._checked_version == int(tbl.version):
            return True
        try:
            self.refresh(store)
        except Exception as exc:  # e.g. a read-only object store
            log.warning("BM25 leg '%s': cannot rebuild the full-text index: %s", self.name, exc)
            return self._index_name(tbl) is not None
        return True

    # ---------------------------------------------------------------- search
    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        from lancedb.query import MatchQuery

        tbl = store.table(self.table)
        if not query.text or tbl is None or k <= 0 or not self._ensure_fresh(store, tbl):
            return []
        per_page = 1 if self.unit == "page" else self.candidates_per_page
        limit = k * per_page
        while True:
            q = tbl.search(MatchQuery(query.text, "text"), query_type="fts")
            if where:
                q = q.where(where, prefilter=True)
            columns = ["doc_id", "page_index", "chunk_index", "_score"]
            if self.unit == "chunk":
                columns.append("text")
            rows = q.select(columns).limit(limit).to_arrow().to_pylist()
            hits = rank_pages(
                (
                    (
                        r["doc_id"],
                        r["page_index"],
                        r["_score"],
                        r["chunk_index"] if r["chunk_index"] >= 0 else None,
                        r.get("text", ""),
                    )
                    for r in rows
                ),
                k,
            )
            if len(hits) >= k or len(rows) < limit:
                return hits
            limit *= 2

    def config(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "language": self.language,
            "stem": self.stem,
            "remove_stop_words": self.remove_stop_words,
            "candidates_per_page": self.candidates_per_page,
        }
