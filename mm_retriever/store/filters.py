"""Structured metadata filters compiled to safe LanceDB where-clauses.

Users never pass SQL. A filter is a mapping from a whitelisted column to a value::

    {"doc_id": "3f2a...", "source": ["a.pdf", "b.pdf"], "page_index": {"gte": 2, "lte": 9}}

- a scalar means equality, a list means ``IN`` (an empty list matches nothing);
- a dict holds operators: ``eq``, ``ne``, ``in``, ``gt``, ``gte``, ``lt``, ``lte``;
- column names come from a fixed whitelist; values are type-checked and rendered as SQL literals
  (strings single-quoted with quotes doubled, integers through ``int``), so a value cannot
  break out of its literal.

``doc_id`` and ``page_index`` live in every page-level table; ``source`` and ``title`` live in the
``documents`` table and are resolved to document ids first (see ``split_filters``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

PAGE_COLUMNS: dict[str, type] = {"doc_id": str, "page_index": int}
DOCUMENT_COLUMNS: dict[str, type] = {"doc_id": str, "source": str, "title": str}
FILTER_COLUMNS: dict[str, type] = {**PAGE_COLUMNS, **DOCUMENT_COLUMNS}

_COMPARE = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_OPERATORS = (*_COMPARE, "in")
MATCH_NOTHING = "false"
INT32 = (-(2**31), 2**31 - 1)  # page_index is a 32-bit column


def quote_string(value: str) -> str:
    """A SQL string literal: single quotes doubled (LanceDB/DataFusion keep backslashes as is)."""
    if "\x00" in value:
        raise ValueError("filter values cannot contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def literal(value: Any, kind: type, column: str) -> str:
    """Render one value of ``column`` as a SQL literal, rejecting values of the wrong type."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"filter '{column}' needs integers, got {value!r}")
        if not INT32[0] <= value <= INT32[1]:
            raise ValueError(
                f"filter '{column}' value {value} is out of range ({INT32[0]} to {INT32[1]})"
            )
        return str(int(value))
    if not isinstance(value, str):
        raise ValueError(f"filter '{column}' needs strings, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"filter '{column}' value is not valid Unicode: {value!r}") from None
    return quote_string(value)


def _in(column: str, values: Any, kind: type) -> str:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"filter '{column}': 'in' needs a list, got {values!r}")
    items = [literal(v, kind, column) for v in values]
    if not items:
        return MATCH_NOTHING
    if len(items) == 1:
        return f"{column} = {items[0]}"
    return f"{column} IN ({', '.join(items)})"


def _column_clause(column: str, spec: Any, kind: type) -> str:
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(_OPERATORS))
        if unknown or not spec:
            raise ValueError(
                f"filter '{column}': unknown operator(s) {unknown or '(none given)'}; "
                f"use {', '.join(_OPERATORS)}"
            )
        parts = []
        for op, value in spec.items():
            if op == "in":
                parts.append(_in(column, value, kind))
            else:
                parts.append(f"{column} {_COMPARE[op]} {literal(value, kind, column)}")
        return " AND ".join(parts)
    if isinstance(spec, list | tuple | set | frozenset):
        return _in(column, sorted(spec) if isinstance(spec, set | frozenset) else spec, kind)
    return f"{column} = {literal(spec, kind, column)}"


def where_clause(
    filters: Mapping[str, Any] | None, columns: Mapping[str, type] = FILTER_COLUMNS
) -> str | None:
    """Compile ``filters`` to a where-clause over ``columns``; None when there is nothing to filter.

    Raises ValueError for an unknown column, an unknown operator or a value of the wrong type.
    """
    if filters is not None and not isinstance(filters, Mapping):
        raise ValueError(f"filters must be a mapping, got {type(filters).__name__}")
    if not filters:
        return None
    clauses = []
    for column in sorted(filters):
        if column not in columns:
            raise ValueError(
                f"unknown filter column '{column}'; filterable: {', '.join(sorted(columns))}"
            )
        clauses.append(f"({_column_clause(column, filters[column], columns[column])})")
    return " AND ".join(clauses)


def split_filters(filters: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(page-level filters, document-level filters). Validates column names."""
    if filters is not None and not isinstance(filters, Mapping):
        raise ValueError(
            "filters must be a mapping such as {'doc_id': '3f2a...', 'page_index': {'lte': 9}}, "
            f"got {type(filters).__name__}"
        )
    page: dict[str, Any] = {}
    docs: dict[str, Any] = {}
    for column, spec in (filters or {}).items():
        if column in PAGE_COLUMNS:
            page[column] = spec
        elif column in DOCUMENT_COLUMNS:
            docs[column] = spec
        else:
            raise ValueError(
                f"unknown filter column '{column}'; filterable: {', '.join(sorted(FILTER_COLUMNS))}"
            )
    return page, docs


def and_where(*clauses: str | None) -> str | None:
    """Join optional where-clauses with AND."""
    parts = [f"({c})" for c in clauses if c]
    return " AND ".join(parts) if parts else None


def regex_any(column: str, patterns: Sequence[str]) -> str:
    """A where-clause matching rows whose ``column`` matches any of the regular expressions
    ``patterns`` (each rendered as a string literal); MATCH_NOTHING for none."""
    if not patterns:
        return MATCH_NOTHING
    if not column.isidentifier():
        raise ValueError(f"not a column name: {column!r}")
    return "(" + " OR ".join(f"regexp_like({column}, {quote_string(p)})" for p in patterns) + ")"
