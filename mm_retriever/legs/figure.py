"""Figure leg: figure crops (CLIP/SigLIP image vectors) and their caption + inside text.

A figure scores ``image_weight * cos(query, crop) + text_weight * cos(query, figure text)``
(a part that is absent contributes 0); a page scores its best figure and ``matched`` lists its
figures best first. Without an image encoder the leg searches figure text only. A query image
is compared with the crops (image-image cosine in the CLIP space).

Figure vectors are few, so search is exact over an in-memory matrix, rebuilt only when the
table's version changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mm_retriever.config import DEFAULT_CLIP_MODEL
from mm_retriever.errors import ModelUnavailableError
from mm_retriever.legs.base import (
    LegBase,
    LegOptions,
    build_encoder,
    encode_query_cached,
    normalize_spec,
    rank_pages,
    resolved_spec,
)
from mm_retriever.legs.text import DEFAULT_TEXT_ENCODER
from mm_retriever.protocols import Query
from mm_retriever.store.arrow import vector_type, vectors_from_arrow
from mm_retriever.store.snapshot import VersionedSnapshot
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore
    from mm_retriever.store.reader import TableReader

log = logging.getLogger("mm_retriever")

DEFAULT_IMAGE_ENCODER = {"name": "clip", "options": {"model": DEFAULT_CLIP_MODEL}}


@dataclass
class _Figures:
    version: int
    doc_ids: np.ndarray  # object
    page_index: np.ndarray
    figure_index: np.ndarray
    text: list[str]
    image: np.ndarray | None  # [F, d_img] float32, zero rows where absent
    has_image: np.ndarray  # bool [F]
    text_vec: np.ndarray  # [F, d_txt] float32, zero rows where absent
    has_text: np.ndarray  # bool [F]
    row_of: dict[tuple[str, int, int], int]


class FigureOptions(LegOptions):
    """Options of the figure leg (see ``FigureRetriever``)."""

    image_encoder: Any = DEFAULT_IMAGE_ENCODER
    text_encoder: Any = DEFAULT_TEXT_ENCODER
    image_weight: float = 0.5
    text_weight: float = 0.5
    image_fallback: bool = True


class FigureRetriever(LegBase):
    """Retrieval over figures, charts and tables cropped from pages.

    ``image_encoder=None`` builds a text-only leg. If the image model is unavailable and
    ``image_fallback`` is true, the leg logs one warning and runs text-only (its ``config()``
    then records no image encoder, so the index reopens the same way).
    """

    kind = "figure"
    Options = FigureOptions
    matched_kind = "figure"  # what LegHit.matched indexes

    def __init__(
        self,
        image_encoder: Mapping[str, Any] | None = DEFAULT_IMAGE_ENCODER,
        text_encoder: Mapping[str, Any] | None = DEFAULT_TEXT_ENCODER,
        *,
        name: str = "figure",
        device: str | None = None,
        image_weight: float = 0.5,
        text_weight: float = 0.5,
        image_fallback: bool = True,
    ) -> None:
        super().__init__(name, device)
        self.image_weight = float(image_weight)
        self.text_weight = float(text_weight)
        self.unavailable_image_model: str | None = None
        self.image_spec = normalize_spec(image_encoder) if image_encoder else None
        self.image_encoder = None
        if self.image_spec is not None:
            try:
                self.image_encoder = build_encoder(self.image_spec, device)
            except ModelUnavailableError as exc:
                if not image_fallback:
                    raise
                self.unavailable_image_model = exc.model
                log.warning(
                    "figure leg '%s': image model '%s' unavailable, using figure text only "
                    "(fix: pre-download it with `huggingface-cli download %s` or pass a local "
                    "folder as the image_encoder model)",
                    name,
                    exc.model,
                    exc.model,
                )
                self.image_spec = None
        self.text_spec = normalize_spec(text_encoder) if text_encoder else None
        self.text_encoder = build_encoder(self.text_spec, device) if self.text_spec else None
        if self.image_encoder is None and self.text_encoder is None:
            raise ValueError("the figure leg needs an image encoder, a text encoder, or both")
        self._snapshot = VersionedSnapshot(self._build)

    def uses_models(self) -> bool:
        return self.text_encoder is not None or self.image_encoder is not None

    def searches_images(self) -> bool:
        return self.image_encoder is not None

    def schema(self) -> pa.Schema:
        fields = [
            ("doc_id", pa.string()),
            ("page_index", pa.int32()),
            ("figure_index", pa.int32()),
            ("text", pa.string()),
        ]
        if self.image_encoder is not None:
            fields.append(("image_vector", vector_type(self.image_encoder.dim, "float32")))
        if self.text_encoder is not None:
            fields.append(("text_vector", vector_type(self.text_encoder.dim, "float32")))
        return pa.schema(fields)

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        figures = [(p, f) for p in pages for f in p.figures]
        if not figures:
            return []
        rows = [
            {
                "doc_id": p.doc_id,
                "page_index": p.page_index,
                "figure_index": f.figure_index,
                "text": f.text,
            }
            for p, f in figures
        ]
        if self.image_encoder is not None:
            with_image = [i for i, (_, f) in enumerate(figures) if f.image is not None]
            vecs = (
                self.image_encoder.encode_document([figures[i][1].image for i in with_image])
                if with_image
                else []
            )
            for row in rows:
                row["image_vector"] = None
            for j, i in enumerate(with_image):
                rows[i]["image_vector"] = vecs[j]
        if self.text_encoder is not None:
            with_text = [i for i, (_, f) in enumerate(figures) if f.text.strip()]
            vecs = (
                self.text_encoder.encode_document([figures[i][1].text for i in with_text])
                if with_text
                else []
            )
            for row in rows:
                row["text_vector"] = None
            for j, i in enumerate(with_text):
                rows[i]["text_vector"] = vecs[j]
        return rows

    # ---------------------------------------------------------------- search
    def _figures(self, store: LanceDBStore) -> _Figures | None:
        return self._snapshot.get(store.reader(self.table))

    @staticmethod
    def _build(tbl: TableReader, version: int) -> _Figures:
        data = tbl.scan()

        def matrix(col: str) -> tuple[np.ndarray | None, np.ndarray]:
            if col not in data.schema.names:
                return None, np.zeros(data.num_rows, dtype=bool)
            present = ~np.asarray(data.column(col).is_null().to_numpy(zero_copy_only=False))
            return vectors_from_arrow(data.column(col)).astype(np.float32), present

        image, has_image = matrix("image_vector")
        text_vec, has_text = matrix("text_vector")
        doc_ids = np.asarray(data.column("doc_id").to_pylist(), dtype=object)
        page_index = data.column("page_index").to_numpy()
        figure_index = data.column("figure_index").to_numpy()
        return _Figures(
            version=version,
            doc_ids=doc_ids,
            page_index=page_index,
            figure_index=figure_index,
            text=data.column("text").to_pylist(),
            image=image,
            has_image=has_image,
            text_vec=text_vec if text_vec is not None else np.zeros((data.num_rows, 0)),
            has_text=has_text,
            row_of={
                (d, int(p), int(f)): i
                for i, (d, p, f) in enumerate(zip(doc_ids, page_index, figure_index, strict=True))
            },
        )

    def figure_scores(
        self, store: LanceDBStore, query: Query
    ) -> tuple[_Figures, np.ndarray] | None:
        """Every stored figure's score for ``query`` (None when the leg cannot use the query)."""
        figs = self._figures(store)
        if figs is None or len(figs.text) == 0:
            return None
        scores = np.zeros(len(figs.text), dtype=np.float32)
        used = False
        if query.text:
            if self.image_encoder is not None and figs.image is not None:
                q = np.asarray(encode_query_cached(self.image_encoder, query.text), np.float32)
                scores += self.image_weight * (figs.image @ q) * figs.has_image
                used = True
            if self.text_encoder is not None and figs.text_vec.shape[1]:
                q = np.asarray(encode_query_cached(self.text_encoder, query.text), np.float32)
                scores += self.text_weight * (figs.text_vec @ q) * figs.has_text
                used = True
        if query.image is not None and self.image_encoder is not None and figs.image is not None:
            q = np.asarray(self.image_encoder.encode_document([query.image])[0], dtype=np.float32)
            scores += self.image_weight * (figs.image @ q) * figs.has_image
            used = True
        return (figs, scores) if used else None

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        if k <= 0:
            return []
        found = self.figure_scores(store, query)
        if found is None:
            return []
        figs, scores = found
        keep = np.ones(len(scores), dtype=bool)
        if where:
            allowed = store.query(self.table, where, ["doc_id", "page_index", "figure_index"])
            keep[:] = False
            for d, p, f in zip(
                allowed.column("doc_id").to_pylist(),
                allowed.column("page_index").to_pylist(),
                allowed.column("figure_index").to_pylist(),
                strict=True,
            ):
                i = figs.row_of.get((d, int(p), int(f)))
                if i is not None:
                    keep[i] = True
        idx = np.flatnonzero(keep)
        return rank_pages(
            (
                (
                    figs.doc_ids[i],
                    int(figs.page_index[i]),
                    float(scores[i]),
                    int(figs.figure_index[i]),
                    figs.text[i],
                )
                for i in idx
            ),
            k,
        )

    def config(self) -> dict[str, Any]:
        out = self.options_dump(
            image_encoder=(
                resolved_spec(self.image_spec["name"], self.image_encoder)
                if self.image_spec and self.image_encoder is not None
                else None
            ),
            text_encoder=(
                resolved_spec(self.text_spec["name"], self.text_encoder)
                if self.text_spec and self.text_encoder is not None
                else None
            ),
            image_weight=self.image_weight,
            text_weight=self.text_weight,
        )
        del out["image_fallback"]  # how a missing model is handled, not what the index holds
        return out
