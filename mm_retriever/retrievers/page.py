"""Page-image leg: ColPali-family patch multivectors, exact MaxSim (late interaction).

Each page's patch vectors are stored as one row of ``leg_<name>`` (``list<fixed_size_list>``,
float16 by default). At query time the stored multivectors are held in memory as one padded
matrix (``scoring.MultiVectorMatrix``), built on first use and rebuilt only when the table's
version changes, so a query costs one query encoding plus one batched MaxSim.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from mm_retriever.config import DEFAULT_PAGE_MODEL
from mm_retriever.protocols import Query
from mm_retriever.retrievers.base import (
    LegBase,
    build_encoder,
    encode_query_cached,
    normalize_spec,
    rank_pages,
    resolved_spec,
    top_indices,
)
from mm_retriever.store.arrow import multivector_type, multivectors_from_arrow
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    import torch

    from mm_retriever.store import LanceDBStore

DEFAULT_PAGE_ENCODER = {"name": "colpali", "options": {"model": DEFAULT_PAGE_MODEL}}


@dataclass
class _Pages:
    version: int
    doc_ids: list[str]
    page_index: np.ndarray
    matrix: Any  # scoring.MultiVectorMatrix
    row_of: dict[tuple[str, int], int]


class PageImageRetriever(LegBase):
    """Visual page retrieval: ColPali / ColQwen / ColSmol multivectors scored by MaxSim.

    A text query is embedded with the encoder's query side; a query image is embedded as a
    page (document side) and scored the same way.
    """

    kind = "page"
    matched_kind = None

    def __init__(
        self,
        encoder: Mapping[str, Any] | None = None,
        *,
        name: str = "page",
        device: str | None = None,
        storage_dtype: Literal["float16", "float32"] = "float16",
    ) -> None:
        super().__init__(name, device)
        if storage_dtype not in ("float16", "float32"):
            raise ValueError(f"storage_dtype must be float16 or float32, got {storage_dtype!r}")
        self.encoder_spec = normalize_spec(encoder, DEFAULT_PAGE_ENCODER)
        self.encoder = build_encoder(self.encoder_spec, device)
        self.storage_dtype = storage_dtype
        self._cache: _Pages | None = None
        self._lock = threading.Lock()

    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("doc_id", pa.string()),
                ("page_index", pa.int32()),
                ("vectors", multivector_type(self.encoder.dim, self.storage_dtype)),
            ]
        )

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        pages = [p for p in pages if p.image is not None]
        if not pages:
            return []
        vectors = self.encoder.encode_document([p.image for p in pages])
        return [
            {"doc_id": p.doc_id, "page_index": p.page_index, "vectors": v}
            for p, v in zip(pages, vectors, strict=True)
        ]

    # ---------------------------------------------------------------- search
    def stored_vectors(self, store: LanceDBStore) -> tuple[list[tuple[str, int]], list[np.ndarray]]:
        """Every stored page key and its multivector (as stored), in table order."""
        tbl = store.table(self.table)
        if tbl is None:
            return [], []
        data = tbl.search().limit(None).to_arrow()
        keys = list(
            zip(
                data.column("doc_id").to_pylist(),
                data.column("page_index").to_pylist(),
                strict=True,
            )
        )
        return keys, multivectors_from_arrow(data.column("vectors"))

    def _pages(self, store: LanceDBStore) -> _Pages | None:
        tbl = store.table(self.table)
        if tbl is None:
            return None
        version = int(tbl.version)
        with self._lock:
            if self._cache is None or self._cache.version != version:
                from mm_retriever.scoring import MultiVectorMatrix

                keys, mats = self.stored_vectors(store)
                device = getattr(self.encoder, "device", None) or "cpu"
                matrix = (
                    MultiVectorMatrix(mats, dtype=self.storage_dtype, device=device)
                    if mats
                    else None
                )
                self._cache = _Pages(
                    version=version,
                    doc_ids=[k[0] for k in keys],
                    page_index=np.asarray([k[1] for k in keys], dtype=np.int64),
                    matrix=matrix,
                    row_of={k: i for i, k in enumerate(keys)},
                )
            return self._cache

    def encode_query(self, query: Query) -> torch.Tensor | None:
        """The query's multivector: text via the query side, an image via the document side."""
        if query.text:
            return encode_query_cached(self.encoder, query.text)
        if query.image is not None:
            return self.encoder.encode_document([query.image])[0]
        return None

    def scores(
        self, store: LanceDBStore, query: Query, rows: np.ndarray | None = None
    ) -> tuple[_Pages, np.ndarray] | None:
        """MaxSim of ``query`` against every stored page, or the pages at ``rows``."""
        pages = self._pages(store)
        if pages is None or pages.matrix is None:
            return None
        scores = self._score(pages, query, rows)
        return None if scores is None else (pages, scores)

    def _score(self, pages: _Pages, query: Query, rows: np.ndarray | None) -> np.ndarray | None:
        qvec = self.encode_query(query)
        if qvec is None:
            return None
        return pages.matrix.score(qvec, rows=rows).float().cpu().numpy()

    def _allowed_rows(self, store: LanceDBStore, pages: _Pages, where: str) -> np.ndarray:
        allowed = store.query(self.table, where, ["doc_id", "page_index"])
        found = (
            pages.row_of.get(key)
            for key in zip(
                allowed.column("doc_id").to_pylist(),
                allowed.column("page_index").to_pylist(),
                strict=True,
            )
        )
        return np.asarray(sorted(i for i in found if i is not None), dtype=np.int64)

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        if k <= 0:
            return []
        pages = self._pages(store)
        if pages is None or pages.matrix is None:
            return []
        rows = self._allowed_rows(store, pages, where) if where else None
        if rows is not None and rows.size == 0:
            return []
        scores = self._score(pages, query, rows)
        if scores is None:
            return []
        index = rows if rows is not None else np.arange(len(scores))
        best = top_indices(scores, k)
        return rank_pages(
            (
                (
                    pages.doc_ids[index[i]],
                    int(pages.page_index[index[i]]),
                    float(scores[i]),
                    None,
                    "",
                )
                for i in best
            ),
            k,
        )

    def config(self) -> dict[str, Any]:
        return {
            "encoder": resolved_spec(self.encoder_spec["name"], self.encoder),
            "storage_dtype": self.storage_dtype,
        }
