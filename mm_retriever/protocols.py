"""Typing protocols for what varies: encoders, legs, fusions.

Encoders follow sentence-transformers' verbs: ``encode_query`` and ``encode_document``.
Every plugin exposes ``config()``: the JSON-ready constructor arguments that rebuild it, which the
index manifest stores next to the plugin's registry name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from mm_retriever.errors import EmptyQueryError, InvalidQueryError
from mm_retriever.limits import check_k  # noqa: F401  (re-exported; the limits live there)
from mm_retriever.types import FusedHit, LegHit, Page

if TYPE_CHECKING:
    import pyarrow as pa
    import torch
    from pydantic import BaseModel

    from mm_retriever.store import LanceDBStore


@dataclass
class Query:
    """A query: text, an image, or both. Legs use what they can."""

    text: str = ""
    image: Image.Image | None = None

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise InvalidQueryError(f"query text must be a string, got {type(self.text).__name__}")
        if self.image is not None and not isinstance(self.image, Image.Image):
            raise InvalidQueryError(
                f"query image must be a PIL image, got {type(self.image).__name__}"
            )
        self.text = (self.text or "").strip()
        try:
            self.text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidQueryError(
                f"the query text is not valid Unicode: {exc.reason} at position {exc.start}"
            ) from None
        if not self.text and self.image is None:
            raise EmptyQueryError()

    @classmethod
    def of(cls, query: str | Image.Image | Query) -> Query:
        if isinstance(query, Query):
            return query
        if isinstance(query, Image.Image):
            return cls(image=query)
        if not isinstance(query, str):
            raise InvalidQueryError(
                f"a query is a string, a PIL image or a Query, got {type(query).__name__}"
            )
        return cls(text=query)


@runtime_checkable
class TextEncoder(Protocol):
    """Dense single-vector text encoder (sentence-transformers family)."""

    dim: int

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; the family's query prefix applied."""
        ...

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; the family's passage prefix applied."""
        ...

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class MultiVectorEncoder(Protocol):
    """Late-interaction encoder (ColPali family): one vector per token / image patch."""

    dim: int

    def encode_query(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """One [n_tokens, dim] float tensor per query (padding removed)."""
        ...

    def encode_document(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """One [n_patches, dim] float tensor per page image (padding removed)."""
        ...

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class ImageTextEncoder(Protocol):
    """Dual encoder over images and text in one space (CLIP / SigLIP)."""

    dim: int

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised text embeddings."""
        ...

    def encode_document(self, images: Sequence[Image.Image]) -> np.ndarray:
        """[n, dim] float32, L2-normalised image embeddings."""
        ...

    def config(self) -> dict[str, Any]: ...


class Leg:
    """A retrieval leg: encodes documents into rows of its own table and answers page-level.

    Subclass it. ``rows``, ``retrieve`` and ``config`` are the leg's own; every other hook has a
    default here, so the index, ``HybridRetriever``, ``explain`` and the adapters call them
    instead of probing. (A plugin class that does not subclass ``Leg`` is wrapped by
    ``index.legs.build_leg`` in a :class:`PluginLeg` that adds these defaults.)

    ``name`` is the instance name used in results (``leg_ranks["page"]``) and the table name
    prefix. Writing is two-phase so one bad document never leaves half-written rows: ``rows``
    encodes pages without touching the store; the index collects a document's rows for every leg
    and writes them together (table ``leg_<name>``), then marks the document as indexed.

    A leg reads its own table through ``store.reader(self.table)``, a read-only
    ``store.reader.TableReader`` (version, scans and takes of columns, vector and full-text
    search); ``where`` is a where-clause made by ``store.filters`` from the structured filters.

    Readers follow writers: ``retrieve`` must read through ``store`` on every call and may cache
    derived state (an in-memory BM25 index, a matrix of vectors) only keyed on
    ``store.reader(self.table).version``. The store re-checks table versions on each read
    (``read_consistency_interval``: 0 s locally, 5 s on object stores), so a version key follows
    other processes' adds and deletes. Rows of documents that are not committed (no
    ``documents`` row) may be returned as hits; ``HybridRetriever`` drops them, so a page whose
    delete has committed is never returned.
    """

    #: the instance name (set by the constructor or by ``index.legs.build_leg``)
    name: str = ""
    #: registry name of the leg's class ("page", "text", "bm25", "figure", a plugin's name)
    kind: str = ""
    #: what ``LegHit.matched`` indexes: "chunk" (text chunks), "figure", or None (nothing)
    matched_kind: str | None = None
    #: an image model this leg was configured with but could not load (it then reads, not writes)
    unavailable_image_model: str | None = None
    #: the typed constructor options (a pydantic model, ``extra="forbid"``): ``index.legs``
    #: validates a ``LegSpec``'s options with it and ``config()`` dumps through it, so what the
    #: manifest saves is what the constructor takes. None: options passed unchecked.
    Options: ClassVar[type[BaseModel] | None] = None

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        """Encode a batch of pages (all of one document) into rows for this leg's table."""
        raise NotImplementedError

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        """The ``k`` best pages for ``query`` among the rows matching ``where``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The JSON-ready constructor arguments that rebuild this leg (stored in the manifest)."""
        raise NotImplementedError

    def schema(self) -> pa.Schema | None:
        """The Arrow schema of the leg's table, created empty with the index (None: inferred)."""
        return None

    def refresh(self, store: LanceDBStore) -> None:
        """Called by a writer after it changed the tables (rebuild search indexes, save state)."""

    def uses_models(self) -> bool:
        """Whether the leg embeds with a model (a BM25-only index never imports torch)."""
        return False

    def searches_images(self) -> bool:
        """Whether the leg can answer a query image (page: yes; figure: with an image model)."""
        return True


class PluginLeg(Leg):
    """A leg object that does not subclass :class:`Leg`, with ``Leg``'s defaults added.

    The hooks the object has are called; those it lacks take ``Leg``'s defaults (for
    ``uses_models`` and ``searches_images``: the rules the index applied before ``Leg`` existed).
    This is the one place that asks a plugin which hooks it has. Other attributes (``table``,
    a plugin's own settings) are the object's.
    """

    def __init__(self, leg: Any, kind: str = "") -> None:
        self.__dict__["leg"] = leg
        self.__dict__["_kind"] = kind

    def __getattr__(self, attr: str) -> Any:  # only for names not found on PluginLeg
        return getattr(self.__dict__["leg"], attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self.leg, attr, value)

    def __repr__(self) -> str:
        return repr(self.leg)

    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.leg, "name", "")

    @property
    def kind(self) -> str:  # type: ignore[override]
        return getattr(self.leg, "kind", self._kind)

    @property
    def matched_kind(self) -> str | None:  # type: ignore[override]
        return getattr(self.leg, "matched_kind", None)

    @property
    def unavailable_image_model(self) -> str | None:  # type: ignore[override]
        return getattr(self.leg, "unavailable_image_model", None)

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        return self.leg.rows(pages)

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        return self.leg.retrieve(store, query, k, where)

    def config(self) -> dict[str, Any]:
        return self.leg.config()

    def schema(self) -> pa.Schema | None:
        schema = getattr(self.leg, "schema", None)
        return schema() if callable(schema) else None

    def refresh(self, store: LanceDBStore) -> None:
        refresh = getattr(self.leg, "refresh", None)
        if callable(refresh):
            refresh(store)

    def uses_models(self) -> bool:
        models = ("encoder", "text_encoder", "image_encoder")
        return any(getattr(self.leg, a, None) is not None for a in models)

    def searches_images(self) -> bool:
        return getattr(self.leg, "image_encoder", True) is not None


@runtime_checkable
class Fusion(Protocol):
    """Combines per-leg page rankings into one page ranking."""

    def fuse(self, rankings: Mapping[str, Sequence[LegHit]], k: int) -> list[FusedHit]: ...

    def config(self) -> dict[str, Any]: ...
