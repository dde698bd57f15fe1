"""A third-party retrieval leg for mm-retriever, found through the ``mm_retriever.legs`` group.

``KeywordLeg`` ranks pages by how many times the query's words occur in the page text. It uses
only mm-retriever's public types (``Leg``, ``Page``, ``Query``, ``LegHit``), ``leg_table`` (the
name of the table the index writes a leg's rows to) and the store's ``query``. Subclassing
``Leg`` gives the optional hooks (``refresh``, ``matched_kind`` ...) their defaults.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from mm_retriever.protocols import Leg, Query
from mm_retriever.store import leg_table
from mm_retriever.types import LegHit, Page

_WORD = re.compile(r"\w+")

SCHEMA = pa.schema([("doc_id", pa.string()), ("page_index", pa.int32()), ("text", pa.string())])


def _words(text: str, min_len: int) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) >= min_len]


class KeywordLeg(Leg):
    """Counts query-word occurrences per page (words of at least ``min_len`` letters)."""

    kind = "example-leg"

    def __init__(self, *, name: str = "example-leg", device: str | None = None, min_len: int = 4):
        self.name = name
        self.device = device
        self.min_len = int(min_len)

    @property
    def table(self) -> str:
        return leg_table(self.name)

    def schema(self) -> pa.Schema:
        return SCHEMA

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        return [{"doc_id": p.doc_id, "page_index": p.page_index, "text": p.text} for p in pages]

    def retrieve(self, store: Any, query: Query, k: int, where: str | None = None) -> list[LegHit]:
        terms = set(_words(query.text, self.min_len))
        if not terms or k <= 0:
            return []
        rows = store.query(self.table, where=where, columns=["doc_id", "page_index", "text"])
        hits = []
        for r in rows.to_pylist():
            counts = Counter(_words(r["text"] or "", self.min_len))
            score = float(sum(counts[t] for t in terms))
            if score > 0:
                hits.append(LegHit(r["doc_id"], int(r["page_index"]), score))
        hits.sort(key=lambda h: (-h.score, h.doc_id, h.page_index))
        for rank, hit in enumerate(hits[:k], start=1):
            hit.rank = rank
        return hits[:k]

    def config(self) -> dict[str, Any]:
        return {"min_len": self.min_len}
