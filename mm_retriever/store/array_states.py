"""Saved numpy states in a table of the index: for indexes on object storage.

A leg's in-RAM structures (the page leg's first stage) saved as rows of the service table
``page_index_state``: one row per part (at most ``PART_BYTES``) of each array, keyed by the leg's
table, a config key and the version of the leg's table the state was built from. A save is one
append (one commit: a reader sees a state whole or not at all), then the older states of the
same leg are deleted. Loading reads the newest state at or below a version and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mm_retriever.store.filters import quote_string

if TYPE_CHECKING:
    from lancedb.table import Table

STATE_TABLE = "page_index_state"
PART_BYTES = 64 << 20
STATE_SCHEMA = pa.schema(
    [
        pa.field("leg", pa.string()),
        pa.field("key", pa.string()),
        pa.field("version", pa.int64()),
        pa.field("name", pa.string()),
        pa.field("dtype", pa.string()),
        pa.field("shape", pa.list_(pa.int64())),
        pa.field("part", pa.int32()),
        pa.field("data", pa.large_binary()),
    ]
)


def _of(leg: str, key: str) -> str:
    return f"leg = {quote_string(leg)} AND key = {quote_string(key)}"


def state_rows(leg: str, key: str, version: int, arrays: dict[str, np.ndarray]) -> pa.Table:
    """The rows of one saved state (C-ordered bytes of each array, in parts)."""
    rows: dict[str, list] = {f.name: [] for f in STATE_SCHEMA}
    for name, arr in sorted(arrays.items()):
        arr = np.ascontiguousarray(arr)
        raw = arr.tobytes()
        for part, start in enumerate(range(0, max(len(raw), 1), PART_BYTES)):
            values = (leg, key, version, name, arr.dtype.str, list(arr.shape), part)
            for field, value in zip(STATE_SCHEMA.names, values, strict=False):
                rows[field].append(value)
            rows["data"].append(raw[start : start + PART_BYTES])
    return pa.table(rows, schema=STATE_SCHEMA)


def save(tbl: Table, leg: str, key: str, version: int, arrays: dict[str, np.ndarray]) -> None:
    """Append the state of ``leg`` at ``version`` (one commit); drop the leg's older states."""
    if has(tbl, leg, key, version):
        return
    tbl.add(state_rows(leg, key, version, arrays))
    tbl.delete(f"leg = {quote_string(leg)} AND version < {int(version)}")


def versions(tbl: Table, leg: str, key: str) -> list[int]:
    """The table versions ``leg`` has a saved state of under ``key``, ascending."""
    found = tbl.search().where(_of(leg, key)).select(["version"]).limit(None).to_arrow()
    return sorted(set(found.column("version").to_pylist()))


def has(tbl: Table, leg: str, key: str, version: int | None = None) -> bool:
    """Whether a state of ``leg`` under ``key`` is saved (at ``version``, when given)."""
    saved = versions(tbl, leg, key)
    return bool(saved) and (version is None or version in saved)


def load(
    tbl: Table, leg: str, key: str, max_version: int
) -> tuple[int, dict[str, np.ndarray]] | None:
    """The newest state of ``leg`` under ``key`` at a version <= ``max_version`` (or None).

    The arrays are writable copies (in-place edits stay in this process)."""
    saved = [v for v in versions(tbl, leg, key) if v <= max_version]
    if not saved:
        return None
    version = saved[-1]
    rows = (
        tbl.search()
        .where(f"{_of(leg, key)} AND version = {version}")
        .select(["name", "dtype", "shape", "part", "data"])
        .limit(None)
        .to_arrow()
        .sort_by([("name", "ascending"), ("part", "ascending")])
    )
    parts: dict[str, list[bytes]] = {}
    meta: dict[str, tuple[str, list[int]]] = {}
    for name, dtype, shape, data in zip(
        *(rows.column(c).to_pylist() for c in ("name", "dtype", "shape", "data")), strict=True
    ):
        parts.setdefault(name, []).append(data)
        meta[name] = (dtype, shape)
    arrays = {}
    for name, chunks in parts.items():
        dtype, shape = meta[name]
        buf = bytearray().join(chunks)
        arrays[name] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
    return version, arrays
