"""Dense text leg: chunk embeddings (sentence-transformers), page score = best chunk's cosine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mm_retriever.config import DEFAULT_TEXT_MODEL
from mm_retriever.protocols import Query
from mm_retriever.retrievers.base import (
    LegBase,
    build_encoder,
    encode_query_cached,
    normalize_spec,
    rank_pages,
    resolved_spec,
)
from mm_retriever.store.arrow import vector_type
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore

DEFAULT_TEXT_ENCODER = {"name": "sentence-transformers", "options": {"model": DEFAULT_TEXT_MODEL}}


def page_chunks(page: Page) -> list[tuple[int, str]]:
    """(chunk_index, text) of a page's non-empty chunks; the whole text if it has no chunks."""
    chunks = [(c.chunk_index, c.text) for c in page.chunks if c.text.strip()]
    if not chunks and page.text.strip():
        chunks = [(0, page.text)]
    return chunks


class TextRetriever(LegBase):
    """Dense retrieval over text chunks; a page scores the max cosine of its chunks.

    Search is exact (brute-force cosine in LanceDB, no ANN index), with metadata filters applied
    before the search. ``matched`` lists the page's matching chunk indices, best first.
    """

    kind = "text"
    matched_kind = "chunk"  # what LegHit.matched indexes

    def __init__(
        self,
        encoder: Mapping[str, Any] | None = None,
        *,
        name: str = "text",
        device: str | None = None,
        chunks_per_page: int = 4,
    ) -> None:
        super().__init__(name, device)
        self.encoder_spec = normalize_spec(encoder, DEFAULT_TEXT_ENCODER)
        self.encoder = build_encoder(self.encoder_spec, device)
        self.chunks_per_page = max(1, int(chunks_per_page))

    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("doc_id", pa.string()),
                ("page_index", pa.int32()),
                ("chunk_index", pa.int32()),
                ("text", pa.string()),
                ("vector", vector_type(self.encoder.dim, "float32")),
            ]
        )

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        items = [(p, idx, text) for p in pages for idx, text in page_chunks(p)]
        if not items:
            return []
        vectors = self.encoder.encode_document([text for _, _, text in items])
        return [
            {
                "doc_id": p.doc_id,
                "page_index": p.page_index,
                "chunk_index": idx,
                "text": text,
                "vector": vectors[i],
            }
            for i, (p, idx, text) in enumerate(items)
        ]

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        tbl = store.table(self.table)
        if not query.text or tbl is None or k <= 0:
            return []
        qvec = encode_query_cached(self.encoder, query.text)
        total = tbl.count_rows(where) if where else tbl.count_rows()
        limit = min(total, k * self.chunks_per_page)
        while True:
            q = tbl.search(qvec, vector_column_name="vector").distance_type("cosine")
            if where:
                q = q.where(where, prefilter=True)
            rows = (
                q.select(["doc_id", "page_index", "chunk_index", "text", "_distance"])
                .limit(max(limit, 1))
                .to_arrow()
                .to_pylist()
            )
            hits = rank_pages(
                (
                    (
                        r["doc_id"],
                        r["page_index"],
                        1.0 - r["_distance"],
                        r["chunk_index"],
                        r["text"],
                    )
                    for r in rows
                ),
                k,
            )
            if len(hits) >= k or limit >= total:
                return hits
            limit = min(total, limit * 2)

    def config(self) -> dict[str, Any]:
        return {
            "encoder": resolved_spec(self.encoder_spec["name"], self.encoder),
            "chunks_per_page": self.chunks_per_page,
        }
