"""Search indexes on a leg's table: an ANN vector index (above a size threshold) and a full-text
(BM25) index, both LanceDB's own, stored with the table.

Writers create them and keep them current (``ensure_*``, called from a leg's ``refresh`` after a
write, under the writer lock); readers only look them up (``find_index``), so opening or searching
an index writes nothing. Rows appended after an index was built are "unindexed": LanceDB searches
them with a flat scan next to the index until ``optimize`` folds them in (``LanceDBStore.optimize``
does that when it compacts; ``ensure_*`` does it once the unindexed share grows past a bound).
Deleted rows are masked by LanceDB's deletion files, so results never include them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mm_retriever.progress import step
from mm_retriever.store.snapshot import VersionedSnapshot

if TYPE_CHECKING:
    from lancedb.table import Table

    from mm_retriever.store.reader import TableReader

log = logging.getLogger("mm_retriever")

#: ANN index kinds a leg may ask for (LanceDB names)
VECTOR_INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_SQ", "IVF_FLAT")

#: fold unindexed rows into an index once they are this share of the table (and >= the floor)
UNINDEXED_SHARE = 0.05
UNINDEXED_FLOOR = 2_000


def find_index(tbl: Table, column: str, kind: str) -> Any | None:
    """The index of ``kind`` ("vector" or "fts") on ``column`` (LanceDB's IndexConfig), if any."""
    for cfg in tbl.list_indices():
        if list(cfg.columns) == [column] and index_kind(cfg) == kind:
            return cfg
    return None


class IndexPresence:
    """Whether a table has an index of ``kind`` on ``column``, looked up once per table version
    (readers ask on every query; the answer only changes with a new version)."""

    def __init__(self, column: str, kind: str) -> None:
        self.column = column
        self.kind = kind
        self._seen = VersionedSnapshot(lambda reader, _: reader.has_index(column, kind))

    def __call__(self, reader: TableReader | None) -> bool:
        return bool(self._seen.get(reader))


def index_kind(cfg: Any) -> str:
    """ "vector" (IvfPq, IvfHnswSq, ...), "fts" or "scalar" (BTree, Bitmap, ...)."""
    name = str(cfg.index_type).lower()
    if name.startswith("ivf"):
        return "vector"
    return "fts" if name in ("fts", "inverted") else "scalar"


def unindexed_rows(tbl: Table, cfg: Any) -> int:
    """Rows of ``tbl`` that ``cfg``'s index does not cover yet (searched by a flat scan)."""
    return int(tbl.index_stats(cfg.name).num_unindexed_rows)


def _fold_in(tbl: Table, cfg: Any) -> bool:
    """Fold unindexed rows into the index when they grew past the bound (a writer's job)."""
    pending = unindexed_rows(tbl, cfg)
    if pending >= max(UNINDEXED_FLOOR, UNINDEXED_SHARE * tbl.count_rows()):
        with step(f"updating the indexes of {tbl.name}"):
            tbl.optimize()  # compaction + index update; old versions follow LanceDB's retention
        return True
    return False


def ensure_vector_index(
    tbl: Table,
    column: str,
    *,
    min_rows: int,
    index_type: str = "IVF_SQ",
    distance: str = "cosine",
) -> bool:
    """Build an ANN index on ``column`` once the table holds ``min_rows`` rows (a writer's job).

    An existing index is kept and updated (never retrained here). Returns True when the table's
    indexes changed.
    """
    from lancedb.index import HnswSq, IvfFlat, IvfPq, IvfSq

    if index_type not in VECTOR_INDEX_TYPES:
        raise ValueError(f"ann_index must be one of {', '.join(VECTOR_INDEX_TYPES)}")
    cfg = find_index(tbl, column, "vector")
    if cfg is not None:
        return _fold_in(tbl, cfg)
    n = tbl.count_rows()
    if n < max(1, min_rows):
        return False
    make = {"IVF_PQ": IvfPq, "IVF_HNSW_SQ": HnswSq, "IVF_SQ": IvfSq, "IVF_FLAT": IvfFlat}
    with step(f"building a {index_type} index on {tbl.name}.{column} ({n} rows)"):
        tbl.create_index(column, config=make[index_type](distance_type=distance), replace=True)
    return True


#: tables this large get a B-tree on ``doc_id`` (hydrating a few pages, within-doc filters)
LOOKUP_MIN_ROWS = 20_000


def ensure_lookup_index(tbl: Table, column: str = "doc_id", *, min_rows: int | None = None) -> bool:
    """A B-tree index on ``column`` once the table holds ``min_rows`` rows (default
    ``LOOKUP_MIN_ROWS``), so ``column = x`` / ``IN (...)`` filters read a few rows instead of
    scanning the column; new rows are folded in like the other indexes. Returns True when the
    table's indexes changed. Below the bound a scan is as fast and nothing is built."""
    cfg = find_index(tbl, column, "scalar")
    if cfg is not None:
        return _fold_in(tbl, cfg)
    if column not in tbl.schema.names:
        return False
    n = tbl.count_rows()
    if n < max(1, LOOKUP_MIN_ROWS if min_rows is None else min_rows):
        return False
    from lancedb.index import BTree

    with step(f"building a B-tree index on {tbl.name}.{column} ({n} rows)"):
        tbl.create_index(column, config=BTree(), replace=True)
    return True


def ensure_fts_index(tbl: Table, column: str, options: Mapping[str, Any]) -> bool:
    """Build LanceDB's full-text (BM25) index on ``column`` with the tokenizer ``options``
    (``lancedb.index.FTS`` arguments), or rebuild it when they changed; fold in new rows.

    Returns True when the table's indexes changed. An empty table gets no index yet.
    """
    from lancedb.index import FTS

    cfg = find_index(tbl, column, "fts")
    if cfg is not None and _same_tokenizer(cfg, options):
        return _fold_in(tbl, cfg)
    if tbl.count_rows() == 0:
        return False
    with step(f"building a full-text index on {tbl.name}.{column}"):
        tbl.create_index(column, config=FTS(**options), replace=True)
    return True


def _same_tokenizer(cfg: Any, options: Mapping[str, Any]) -> bool:
    """Whether an existing FTS index was built with ``options`` (as far as LanceDB records)."""
    details = getattr(cfg, "index_details", None) or {}
    keys = (
        "language",
        "stem",
        "remove_stop_words",
        "custom_stop_words",
        "ascii_folding",
        "lower_case",
    )
    return all(details.get(k, options.get(k)) == options.get(k) for k in keys if k in options)
