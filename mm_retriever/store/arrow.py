"""Rows (dicts with numpy/torch values) to Arrow tables, with fast paths for vector columns.

Vector columns are ``fixed_size_list<float>[dim]`` (one vector per row); multivector columns are
``list<fixed_size_list<float>[dim]>`` (a ``[n, dim]`` matrix per row, e.g. ColPali patches).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


def vector_type(dim: int, dtype: str = "float32") -> pa.DataType:
    return pa.list_(pa.field("item", pa.from_numpy_dtype(np.dtype(dtype))), dim)


def multivector_type(dim: int, dtype: str = "float16") -> pa.DataType:
    return pa.list_(vector_type(dim, dtype))


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def _is_vector(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t)


def _is_multivector(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_vector(t.value_type)


def vector_array(values: Sequence[Any], t: pa.DataType) -> pa.Array:
    """Fixed-size-list array from 1-D arrays (None allowed: a null row)."""
    dim = t.list_size
    np_type = t.value_type.to_pandas_dtype()
    mask = np.array([v is None for v in values], dtype=bool)
    flat = np.zeros((len(values), dim), dtype=np_type)
    for i, v in enumerate(values):
        if v is not None:
            arr = _as_numpy(v).reshape(-1)
            if arr.shape[0] != dim:
                raise ValueError(f"vector of length {arr.shape[0]} for a column of dim {dim}")
            flat[i] = arr
    inner = pa.array(flat.reshape(-1), type=t.value_type)
    return pa.FixedSizeListArray.from_arrays(
        inner, dim, mask=pa.array(mask) if mask.any() else None
    )


def multivector_array(values: Sequence[Any], t: pa.DataType) -> pa.Array:
    """List-of-vectors array from ``[n_i, dim]`` matrices."""
    vt = t.value_type
    dim = vt.list_size
    np_type = vt.value_type.to_pandas_dtype()
    mats = [_as_numpy(v).reshape(-1, dim).astype(np_type, copy=False) for v in values]
    offsets = np.zeros(len(mats) + 1, dtype=np.int64 if pa.types.is_large_list(t) else np.int32)
    np.cumsum([m.shape[0] for m in mats], out=offsets[1:])
    flat = np.concatenate(mats).reshape(-1) if mats else np.zeros(0, dtype=np_type)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=vt.value_type), dim)
    cls = pa.LargeListArray if pa.types.is_large_list(t) else pa.ListArray
    return cls.from_arrays(pa.array(offsets), inner, type=t)


def _plain(value: Any) -> Any:
    if hasattr(value, "detach") or isinstance(value, np.ndarray | np.generic):
        return _as_numpy(value).tolist()
    return value


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Arrow table from row dicts; with a schema, columns follow it (missing keys -> null)."""
    if schema is None:
        return pa.Table.from_pylist([{k: _plain(v) for k, v in r.items()} for r in rows])
    extra = set().union(*(r.keys() for r in rows)) - set(schema.names) if rows else set()
    if extra:
        raise ValueError(f"row keys not in the table schema: {sorted(extra)}")
    cols = []
    for field in schema:
        values = [r.get(field.name) for r in rows]
        if _is_vector(field.type):
            cols.append(vector_array(values, field.type))
        elif _is_multivector(field.type):
            cols.append(multivector_array(values, field.type))
        else:
            cols.append(pa.array([_plain(v) for v in values], type=field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def multivectors_from_arrow(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray]:
    """``[n_i, dim]`` numpy matrices (the stored dtype): views into one copy of the column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.value_type.list_size
    offsets = column.offsets.to_numpy()
    # one writable copy for all rows (torch refuses to wrap read-only Arrow buffers quietly)
    flat = np.array(column.flatten().flatten().to_numpy(zero_copy_only=False)).reshape(-1, dim)
    base = offsets[0]
    return [flat[s - base : e - base] for s, e in itertools.pairwise(offsets)]


def vectors_from_arrow(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``[n, dim]`` numpy matrix from a fixed-size-list column (null rows -> zeros)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    dim = column.type.list_size
    if column.null_count:
        column = column.fill_null(pa.scalar([0.0] * dim, type=column.type))
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
