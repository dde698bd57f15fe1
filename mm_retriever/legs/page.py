"""Page-image leg: ColPali-family patch multivectors, late interaction (MaxSim).

Each page's patch vectors are one row of ``leg_<name>`` (``list<fixed_size_list>``; float16 by
default, int8 codes plus a per-page ``scale`` for ``storage_dtype="int8"``), optionally pooled
first (``pool_factor``, colpali-engine's hierarchical token pooler). Searching goes through a
``mm_retriever.multivector`` index, chosen by ``index``:

- ``"exact"``: every stored vector flat in RAM, exact MaxSim over all (or the filtered) pages.
- ``"two_stage"``: a compact first stage in RAM (``first_stage``: ``"mean"`` segment means,
  ``"binary"`` sign bits, ``"cascade"``: means then sign bits, ``"ann"``: an HNSW graph
  over the segment means, ``"ivf"``: inverted lists of ``centroids`` k-means centres probed
  ``nprobe`` a query vector, or ``"ivf_binary"``: those lists, then sign bits) picks
  ``candidates`` pages; their stored vectors are read by row from
  the Lance table and reranked by exact MaxSim. ``rerank="residual"`` reranks from PLAID
  residual codes the index keeps instead (a centre id plus ``rerank_bits`` bits a dimension,
  34 bytes a 128-d vector at 2 bits, saved with the first stage): a query then reads no stored
  float vectors (``multivector.residual``; quality and sizes in ``benchmarks/late_interaction``).

The default is ``two_stage`` with ``ivf_binary`` (65,536 centres, 4 probed a query vector,
2,000 pages to binary MaxSim, 300 reranked): until the leg holds 16 x 65,536 vectors (about 1,000
unpooled ColPali pages) the lists are untrained and the search is exact MaxSim over vectors kept
in RAM; beyond that it is the three-step search (chosen by ``benchmarks/late_interaction``: 1M
pages, p50 89 ms on 2 cores, recall@10 1.0 against exact, 2.6 KB of RAM a 128-vector page).

Nothing is read when an index is opened. The first query builds the in-RAM structures in one
streaming pass over the table; after that a write (this process's or another's, seen as a new
table version) costs a read of the key columns plus the added rows only. The writer (``refresh``,
after add/delete/compact) saves a two-stage index's first stage after a build (or a change of
more than a tenth of its rows): under ``<index>/_page_index/<table>/`` for a local index, in the
index's ``page_index_state`` table on object storage (``multivector.persist.states_for``);
the next process loads it memory-mapped and applies only the table's changes since, instead of
reading every vector again. A search never writes: without a saved state it builds in RAM.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from mm_retriever.config import DEFAULT_PAGE_MODEL
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
from mm_retriever.store.arrow import multivector_type, multivectors_from_arrow
from mm_retriever.types import LegHit, Page

if TYPE_CHECKING:
    import torch

    from mm_retriever.multivector import ExactIndex, TwoStageIndex
    from mm_retriever.multivector.persist import FolderStates, TableStates
    from mm_retriever.store import LanceDBStore
    from mm_retriever.store.reader import TableReader as Table

DEFAULT_PAGE_ENCODER = {"name": "colpali", "options": {"model": DEFAULT_PAGE_MODEL}}
STORAGE_DTYPES = ("float16", "float32", "int8")
INDEX_TYPES = ("exact", "two_stage")
FIRST_STAGES = ("mean", "binary", "ann", "cascade", "ivf", "ivf_binary")
RERANKS = ("exact", "residual")
_KEYS = ["doc_id", "page_index"]
log = logging.getLogger(__name__)
_BUILD_BATCH = 2048


class StaleRowsError(RuntimeError):
    """The table changed between choosing candidates and reading them (retry after a sync)."""


class PageOptions(LegOptions):
    """Options of the page-image leg (see ``PageImageRetriever``)."""

    encoder: Any = None
    storage_dtype: Literal["float16", "float32", "int8"] = "float16"
    index: Literal["exact", "two_stage"] = "two_stage"
    first_stage: Literal["mean", "binary", "ann", "cascade", "ivf", "ivf_binary"] = "ivf_binary"
    segments: int = 8
    candidates: int = 300
    probe: int = 64
    prefilter: int = 2000
    pool_factor: int = 1
    centroids: int = 65536
    nprobe: int = 4
    rerank: Literal["exact", "residual"] = "exact"
    rerank_bits: Literal[1, 2, 4, 8] = 2


class PageImageRetriever(LegBase):
    """Visual page retrieval: ColPali / ColQwen / ColSmol multivectors scored by MaxSim.

    A text query is embedded with the encoder's query side; a query image is embedded as a
    page (document side) and scored the same way.
    """

    kind = "page"
    Options = PageOptions
    matched_kind = None

    def __init__(
        self,
        encoder: Mapping[str, Any] | None = None,
        *,
        name: str = "page",
        device: str | None = None,
        storage_dtype: Literal["float16", "float32", "int8"] = "float16",
        index: Literal["exact", "two_stage"] = "two_stage",
        first_stage: Literal[
            "mean", "binary", "ann", "cascade", "ivf", "ivf_binary"
        ] = "ivf_binary",
        segments: int = 8,
        candidates: int = 300,
        probe: int = 64,
        prefilter: int = 2000,
        pool_factor: int = 1,
        centroids: int = 65536,
        nprobe: int = 4,
        rerank: Literal["exact", "residual"] = "exact",
        rerank_bits: int = 2,
    ) -> None:
        super().__init__(name, device)
        if rerank not in RERANKS:
            raise ValueError(f"rerank must be one of {RERANKS}, got {rerank!r}")
        if rerank == "residual" and index != "two_stage":
            raise ValueError("rerank='residual' needs index='two_stage'")
        if int(rerank_bits) not in (1, 2, 4, 8):
            raise ValueError(f"rerank_bits must be 1, 2, 4 or 8, got {rerank_bits!r}")
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(
                f"storage_dtype must be one of {STORAGE_DTYPES}, got {storage_dtype!r}"
            )
        if index not in INDEX_TYPES:
            raise ValueError(f"index must be one of {INDEX_TYPES}, got {index!r}")
        if first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES}, got {first_stage!r}")
        for label, value in (
            ("segments", segments),
            ("candidates", candidates),
            ("probe", probe),
            ("prefilter", prefilter),
            ("centroids", centroids),
            ("nprobe", nprobe),
        ):
            if int(value) < 1:
                raise ValueError(f"{label} must be >= 1, got {value!r}")
        if int(pool_factor) < 1:
            raise ValueError(f"pool_factor must be >= 1, got {pool_factor!r}")
        self.encoder_spec = normalize_spec(encoder, DEFAULT_PAGE_ENCODER)
        self.encoder = build_encoder(self.encoder_spec, device)
        self.storage_dtype = storage_dtype
        self.index_type = index
        self.first_stage = first_stage
        self.segments = int(segments)
        self.candidates = int(candidates)
        self.probe = int(probe)
        self.prefilter = int(prefilter)
        self.pool_factor = int(pool_factor)
        self.centroids = int(centroids)
        self.nprobe = int(nprobe)
        self.rerank = rerank
        self.rerank_bits = int(rerank_bits)
        self._mv: ExactIndex | TwoStageIndex | None = None
        self._version: int | None = None
        self._table: Table | None = None
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- writing
    def uses_models(self) -> bool:
        return True

    def schema(self) -> pa.Schema:
        fields = [
            ("doc_id", pa.string()),
            ("page_index", pa.int32()),
            ("vectors", multivector_type(self.encoder.dim, self.storage_dtype)),
        ]
        if self.storage_dtype == "int8":
            fields.append(("scale", pa.float32()))
        return pa.schema(fields)

    def rows(self, pages: Sequence[Page]) -> list[dict[str, Any]]:
        from mm_retriever.multivector import pool_tokens, quantize_int8

        pages = [p for p in pages if p.image is not None]
        if not pages:
            return []
        encoded = self.encoder.encode_document([p.image for p in pages])
        mats = [v.detach().float().cpu().numpy() if hasattr(v, "detach") else v for v in encoded]
        mats = pool_tokens(mats, self.pool_factor)
        out = []
        for p, m in zip(pages, mats, strict=True):
            row: dict[str, Any] = {"doc_id": p.doc_id, "page_index": p.page_index}
            if self.storage_dtype == "int8":
                row["vectors"], row["scale"] = quantize_int8(m)
            else:
                row["vectors"] = m
            out.append(row)
        return out

    # ---------------------------------------------------------------- reading
    def stored_vectors(self, store: LanceDBStore) -> tuple[list[tuple[str, int]], list[np.ndarray]]:
        """Every stored page key and its multivector (dequantised float32 for int8), table order."""
        tbl = store.reader(self.table)
        if tbl is None:
            return [], []
        data = tbl.scan()
        keys = list(zip(*(data.column(c).to_pylist() for c in _KEYS), strict=True))
        mats = multivectors_from_arrow(data.column("vectors"))
        if "scale" in data.schema.names:
            scales = data.column("scale").to_numpy()
            mats = [m.astype(np.float32) * s for m, s in zip(mats, scales, strict=True)]
        return keys, mats

    def _vector_columns(self, tbl: Table) -> list[str]:
        names = tbl.schema.names
        return [*_KEYS, "vectors", *(["scale"] if "scale" in names else [])]

    @staticmethod
    def _flat(
        data: pa.Table, dequantize: bool = True
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
        """``(values, offsets, keys)`` of Arrow rows; int8 rows dequantised to float16.

        With ``dequantize=False`` int8 rows stay codes (their scales: ``_scales(data)``).
        """
        col = data.column("vectors")
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
        dim = col.type.value_type.list_size
        offsets = col.offsets.to_numpy().astype(np.int64)
        flat = col.flatten().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        values = flat[offsets[0] : offsets[-1]]
        offsets = offsets - offsets[0]
        if dequantize and "scale" in data.schema.names:
            scale = np.repeat(data.column("scale").to_numpy(), np.diff(offsets))
            values = (values.astype(np.float32) * scale[:, None]).astype(np.float16)
        keys = list(zip(*(data.column(c).to_pylist() for c in _KEYS), strict=True))
        return values, offsets, keys

    def _fetch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of ``rows`` (table offsets, ascending), checked against the keys held."""
        tbl = self._table
        assert tbl is not None and self._mv is not None
        data = tbl.take([int(r) for r in rows], self._vector_columns(tbl))
        values, offsets, keys = self._flat(data)
        held = self._mv.keys
        if keys != [held[int(r)] for r in rows]:
            raise StaleRowsError("the page table changed while searching")
        return values, offsets

    def _new_index(self, dim: int) -> ExactIndex | TwoStageIndex:
        from mm_retriever.multivector import ExactIndex, TwoStageIndex

        if self.index_type == "exact":
            return ExactIndex(dim, self.storage_dtype)
        return TwoStageIndex(
            dim,
            self._fetch,
            first_stage=self.first_stage,
            segments=self.segments,
            candidates=self.candidates,
            probe=self.probe,
            prefilter=self.prefilter,
            centroids=self.centroids,
            nprobe=self.nprobe,
            rerank=self.rerank,
            rerank_bits=self.rerank_bits,
            rerank_centroids=self.centroids,
        )

    def _add_from(self, mv: ExactIndex | TwoStageIndex, batches: Any) -> None:
        for batch in batches:
            data = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            if data.num_rows == 0:
                continue
            codes = mv.kind == "exact" and "scale" in data.schema.names
            values, offsets, keys = self._flat(data, dequantize=not codes)
            mats = [values[s:e] for s, e in itertools.pairwise(offsets)]
            if codes:  # an int8 exact index keeps the stored codes and scales as they are
                mv.add(keys, mats, data.column("scale").to_numpy())
            else:
                mv.add(keys, mats)

    def _build(self, tbl: Table) -> ExactIndex | TwoStageIndex:
        """One streaming pass over the table (batches of rows; the table is never held whole)."""
        mv = self._new_index(tbl.schema.field("vectors").type.value_type.list_size)
        self._add_from(mv, tbl.scan_batches(self._vector_columns(tbl), _BUILD_BATCH))
        return mv

    def _sync(self, tbl: Table) -> bool:
        """Bring the index to the table's rows: deletes and appends applied in place.

        True when that rebuilt the index or changed more than a tenth of its rows.
        """
        self._table = tbl
        if self._mv is None:
            self._mv = self._build(tbl)
            return True
        keys_now = self._table_keys(tbl)
        present = set(keys_now)
        held = self._mv.keys
        gone = [k for k in held if k not in present]
        survivors = len(held) - len(gone)
        kept = [k for k in held if k in present] if gone else held
        if keys_now[:survivors] != kept:  # rows reordered or rewritten: start over
            self._mv = self._build(tbl)
            return True
        if gone:
            self._mv.delete(gone)
        if len(keys_now) > survivors:
            added = list(range(survivors, len(keys_now)))
            for i in range(0, len(added), _BUILD_BATCH):
                part = added[i : i + _BUILD_BATCH]
                data = tbl.take(part, self._vector_columns(tbl))
                self._add_from(self._mv, [data])
        return len(gone) + len(keys_now) - survivors > 0.1 * max(len(keys_now), 1)

    # ---------------------------------------------------------------- saved first stages
    def _states(self, store: LanceDBStore) -> FolderStates | TableStates | None:
        """Where a two-stage index saves its first stage (None: an exact index saves none)."""
        if self.index_type != "two_stage":
            return None
        from mm_retriever.multivector.persist import states_for

        return states_for(store, self.table)

    def _state_config(self, tbl: Table) -> dict[str, Any]:
        dim = tbl.schema.field("vectors").type.value_type.list_size
        return {"dim": dim, **{k: v for k, v in self.config().items() if k != "encoder"}}

    def _load_saved(self, store: LanceDBStore, tbl: Table, version: int) -> bool:
        states = self._states(store)
        found = None if states is None else states.load(version, self._state_config(tbl))
        if found is None:
            return False
        saved_version, arrays = found
        mv = self._new_index(self._state_config(tbl)["dim"])
        try:
            mv.restore(arrays)
        except (KeyError, ValueError) as exc:
            log.warning("ignoring the saved page-leg state of %s: %s", self.table, exc)
            return False
        self._mv, self._version, self._table = mv, saved_version, tbl
        return True

    def _save(self, store: LanceDBStore, tbl: Table, version: int) -> None:
        states = self._states(store)
        if states is None or self._mv is None:
            return
        try:
            arrays = self._mv.state()
        except NotImplementedError:
            return
        try:
            states.save(version, self._state_config(tbl), arrays)
        except OSError as exc:  # a read-only or full disk costs a rebuild later, not this query
            log.warning("could not save the page-leg state of %s: %s", self.table, exc)

    @staticmethod
    def _table_keys(tbl: Table) -> list[tuple[str, int]]:
        data = tbl.scan(_KEYS)
        return list(zip(*(data.column(c).to_pylist() for c in _KEYS), strict=True))

    def _synced(self, store: LanceDBStore, tbl: Table) -> bool:
        """Bring the in-RAM index to ``tbl``'s version, from a saved first stage when there is
        one (call under ``_lock``). True when that built it or changed a tenth of its rows."""
        version = tbl.version
        if self._mv is None:
            self._load_saved(store, tbl, version)
        if self._mv is not None and self._version == version:
            return False
        changed = self._sync(tbl)
        self._version = version
        return changed

    def _index(self, store: LanceDBStore) -> ExactIndex | TwoStageIndex | None:
        """The multivector index, synced to the table's current version (None: no table).

        The read path: it never writes, also when no saved first stage is found (the index is
        then built in RAM; the next write saves it)."""
        tbl = store.reader(self.table)
        if tbl is None:
            return None
        with self._lock:
            self._synced(store, tbl)
            return self._mv

    def refresh(self, store: LanceDBStore) -> None:
        """The writer's hook after add/delete/compact: apply the change to the in-RAM index and
        save a two-stage index's first stage after a build or a change of a tenth of its rows
        (or when no readable one is saved).

        An exact index that no query has built yet is left to the first query."""
        tbl = store.reader(self.table)
        states = self._states(store)
        if tbl is None or (self._mv is None and states is None):
            return
        with self._lock:
            changed = self._synced(store, tbl)
            if (
                states is not None
                and self._version is not None
                and (changed or not states.has(self._state_config(tbl)))
            ):
                self._save(store, tbl, self._version)

    def memory_bytes(self) -> int:
        """Bytes the in-RAM index holds (0 before the first query)."""
        return 0 if self._mv is None else int(self._mv.nbytes)

    def encode_query(self, query: Query) -> torch.Tensor | None:
        """The query's multivector: text via the query side, an image via the document side."""
        if query.text:
            return encode_query_cached(self.encoder, query.text)
        if query.image is not None:
            return self.encoder.encode_document([query.image])[0]
        return None

    def _allowed_rows(self, store: LanceDBStore, mv: Any, where: str) -> np.ndarray:
        allowed = store.query(self.table, where, _KEYS)
        return mv.rows_of(zip(*(allowed.column(c).to_pylist() for c in _KEYS), strict=True))

    def retrieve(
        self, store: LanceDBStore, query: Query, k: int, where: str | None = None
    ) -> list[LegHit]:
        if k <= 0:
            return []
        qvec = None
        for attempt in range(2):
            with self._lock:
                mv = self._index(store)
                if mv is None or len(mv) == 0:
                    return []
                rows = self._allowed_rows(store, mv, where) if where else None
                if rows is not None and rows.size == 0:
                    return []
                if qvec is None:
                    qvec = self.encode_query(query)
                    if qvec is None:
                        return []
                try:
                    found, scores = mv.search(qvec, k, rows)
                except StaleRowsError:
                    if attempt:
                        raise
                    self._version = None  # re-sync with the table, then search again
                    continue
                keys = mv.keys
                break
        return rank_pages(
            ((*keys[int(r)], float(s), None, "") for r, s in zip(found, scores, strict=True)), k
        )

    def config(self) -> dict[str, Any]:
        return self.options_dump(
            encoder=resolved_spec(self.encoder_spec["name"], self.encoder),
            storage_dtype=self.storage_dtype,
            index=self.index_type,
            first_stage=self.first_stage,
            segments=self.segments,
            candidates=self.candidates,
            probe=self.probe,
            prefilter=self.prefilter,
            pool_factor=self.pool_factor,
            centroids=self.centroids,
            nprobe=self.nprobe,
            rerank=self.rerank,
            rerank_bits=self.rerank_bits,
        )
