"""Dense text leg: chunk embeddings (sentence-transformers), page score = best chunk's cosine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mm_retriever.config import DEFAULT_TEXT_MODEL
from mm_retriever.legs.base import (
    LegBase,
    LegOptions,
    build_encoder,
    encode_query_cached,
    normalize_spec,
    rank_pages,
    resolved_spec,
)
from mm_retriever.protocols import Query
from mm_retriever.store.arrow import vector_type
from mm_retriever.store.table_indexes import (
    VECTOR_INDEX_TYPES,
    IndexPresence,
)
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore
    from mm_retriever.store.reader import TableReader

DEFAULT_TEXT_ENCODER = {"name": "sentence-transformers", "options": {"model": DEFAULT_TEXT_MODEL}}

#: chunks from which the dense text leg searches an ANN index instead of scanning every vector
DEFAULT_ANN_MIN_ROWS = 50_000


def page_chunks(page: Page) -> list[tuple[int, str]]:
    """(chunk_index, text) of a page's non-empty chunks; the whole text if it has no chunks."""
    chunks = [(c.chunk_index, c.text) for c in page.chunks if c.text.strip()]
    if not chunks and page.text.strip():
        chunks = [(0, page.text)]
    return chunks


class TextOptions(LegOptions):
    """Options of the dense text leg (see ``TextRetriever``)."""

    encoder: Any = None
    chunks_per_page: int = 4
    ann_min_rows: int = DEFAULT_ANN_MIN_ROWS
    ann_index: str = "IVF_SQ"
    nprobes: int = 32
    refine_factor: int = 5


class TextRetriever(LegBase):
    """Dense retrieval over text chunks; a page scores the max cosine of its chunks.

    Search is exact (brute-force cosine in LanceDB) until the table holds ``ann_min_rows``
    chunks; from then on a writer keeps a LanceDB ANN index (``ann_index``: IVF_SQ by default)
    on the vectors and queries probe ``nprobes`` partitions and re-rank ``refine_factor`` x the
    asked rows by their exact cosine. Rows added since the index was built are scanned exactly
    next to it. Metadata filters are applied before the search: with an ANN index, a filter that
    leaves few chunks (``exact_filtered_rows``) is answered exactly from those chunks' vectors,
    a broader one by the ANN search restricted to the matching rows. ``matched`` lists the
    page's matching chunk indices, best first.
    """

    kind = "text"
    Options = TextOptions
    matched_kind = "chunk"  # what LegHit.matched indexes
    #: with an ANN index, a filter leaving at most this many chunks is answered exactly (a flat
    #: scan with a prefilter reads every vector; an ANN search with one is approximate)
    exact_filtered_rows = 10_000

    def __init__(
        self,
        encoder: Mapping[str, Any] | None = None,
        *,
        name: str = "text",
        device: str | None = None,
        chunks_per_page: int = 4,
        ann_min_rows: int = DEFAULT_ANN_MIN_ROWS,
        ann_index: str = "IVF_SQ",
        nprobes: int = 32,
        refine_factor: int = 5,
    ) -> None:
        super().__init__(name, device)
        if ann_index not in VECTOR_INDEX_TYPES:
            raise ValueError(
                f"ann_index must be one of {', '.join(VECTOR_INDEX_TYPES)}, got {ann_index!r}"
            )
        self.encoder_spec = normalize_spec(encoder, DEFAULT_TEXT_ENCODER)
        self.encoder = build_encoder(self.encoder_spec, device)
        self.chunks_per_page = max(1, int(chunks_per_page))
        self.ann_min_rows = max(1, int(ann_min_rows))
        self.ann_index = ann_index
        self.nprobes = max(1, int(nprobes))
        self.refine_factor = max(1, int(refine_factor))
        self._ann = IndexPresence("vector", "vector")

    def uses_models(self) -> bool:
        return True

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

    # ----------------------------------------------------------------- index
    def refresh(self, store: LanceDBStore) -> None:
        """After a write (writer, under the lock): build the ANN index once the table holds
        ``ann_min_rows`` chunks; fold many new rows into an existing one."""
        store.ensure_vector_index(
            self.table, "vector", min_rows=self.ann_min_rows, index_type=self.ann_index
        )

    def has_ann_index(self, store: LanceDBStore) -> bool:
        """Whether the table has an ANN index (looked up once per table version)."""
        return self._ann(store.reader(self.table))

    # ---------------------------------------------------------------- search
    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        tbl = store.reader(self.table)
        if not query.text or tbl is None or k <= 0:
            return []
        qvec = encode_query_cached(self.encoder, query.text)
        total = tbl.count(where)
        ann = self._ann(tbl)
        if ann and where and total <= self.exact_filtered_rows:
            return self._exact(tbl, qvec, k, where)
        limit = min(total, k * self.chunks_per_page)
        while True:
            rows = tbl.vector_search(
                qvec,
                "vector",
                max(limit, 1),
                ["doc_id", "page_index", "chunk_index", "text", "_distance"],
                where=where,
                nprobes=self.nprobes if ann else None,
                refine_factor=self.refine_factor if ann else None,
            ).to_pylist()
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
            if len(hits) >= k or limit >= total or len(rows) < limit:
                return hits  # enough pages, every row, or all the index could find
            limit = min(total, limit * 2)

    def _exact(self, tbl: TableReader, qvec: np.ndarray, k: int, where: str) -> list[LegHit]:
        """Exact cosine over the few rows a filter leaves (read with their vectors at once)."""
        data = tbl.scan(["doc_id", "page_index", "chunk_index", "text", "vector"], where)
        if data.num_rows == 0:
            return []
        column = data.column("vector").combine_chunks()
        vectors = column.flatten().to_numpy().reshape(len(column), -1)
        q = np.asarray(qvec, dtype=np.float32).ravel()
        norms = np.linalg.norm(vectors, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
        scores = (vectors @ q) / np.maximum(norms, 1e-12)
        order = np.argsort(-scores, kind="stable")
        doc_ids, pages, chunks, texts = (
            data.column(c).to_pylist() for c in ("doc_id", "page_index", "chunk_index", "text")
        )
        return rank_pages(
            ((doc_ids[i], pages[i], float(scores[i]), chunks[i], texts[i]) for i in order), k
        )

    def config(self) -> dict[str, Any]:
        return self.options_dump(
            encoder=resolved_spec(self.encoder_spec["name"], self.encoder),
            chunks_per_page=self.chunks_per_page,
            ann_min_rows=self.ann_min_rows,
            ann_index=self.ann_index,
            nprobes=self.nprobes,
            refine_factor=self.refine_factor,
        )
