"""Structured filters compile to safe where-clauses (checked on a real LanceDB table)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from mm_retriever.store import LanceDBStore
from mm_retriever.store.filters import (
    DOCUMENT_COLUMNS,
    PAGE_COLUMNS,
    and_where,
    quote_string,
    split_filters,
    where_clause,
)

NASTY = ["plain", "O'Brien", "x' OR '1'='1", "a\\", "back\\' OR 1=1 --", "ünï ✓", "%_*"]


def test_clauses() -> None:
    assert where_clause(None) is None
    assert where_clause({}) is None
    assert where_clause({"doc_id": "abc"}) == "(doc_id = 'abc')"
    assert where_clause({"doc_id": ["a", "b"]}) == "(doc_id IN ('a', 'b'))"
    assert where_clause({"page_index": {"gte": 2, "lte": 9}}) == (
        "(page_index >= 2 AND page_index <= 9)"
    )
    assert where_clause({"source": "r.pdf", "page_index": 3}) == (
        "(page_index = 3) AND (source = 'r.pdf')"
    )
    assert where_clause({"doc_id": []}) == "(false)"
    assert where_clause({"page_index": {"in": [1, 2], "ne": 2}}) == (
        "(page_index IN (1, 2) AND page_index != 2)"
    )
    assert quote_string("O'Brien") == "'O''Brien'"
    assert and_where(None, "a = 1", "") == "(a = 1)"
    assert and_where(None) is None


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown filter column 'text'"):
        where_clause({"text": "x"})
    with pytest.raises(ValueError, match="unknown filter column"):
        where_clause({"doc_id = 'a' OR 1=1 --": "x"})
    with pytest.raises(ValueError, match="needs integers"):
        where_clause({"page_index": "3"})
    with pytest.raises(ValueError, match="needs integers"):
        where_clause({"page_index": True})
    with pytest.raises(ValueError, match="needs strings"):
        where_clause({"doc_id": 5})
    with pytest.raises(ValueError, match="unknown operator"):
        where_clause({"page_index": {"between": [1, 2]}})
    with pytest.raises(ValueError, match="needs a list"):
        where_clause({"doc_id": {"in": "abc"}})
    with pytest.raises(ValueError, match="NUL"):
        where_clause({"doc_id": "a\x00b"})
    with pytest.raises(ValueError, match="unknown filter column"):
        split_filters({"nope": 1})


def test_split() -> None:
    page, docs = split_filters({"doc_id": "a", "source": "s.pdf", "page_index": 1, "title": "T"})
    assert page == {"doc_id": "a", "page_index": 1}
    assert docs == {"source": "s.pdf", "title": "T"}
    assert set(PAGE_COLUMNS) <= set(DOCUMENT_COLUMNS) | {"page_index"}


def test_values_cannot_break_out(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    data = pa.table({"doc_id": NASTY, "page_index": pa.array(range(len(NASTY)), pa.int32())})
    store.add("pages_test", data, None)
    for i, value in enumerate(NASTY):
        rows = store.query("pages_test", where_clause({"doc_id": value}, PAGE_COLUMNS))
        assert rows.column("page_index").to_pylist() == [i], value
    both = where_clause({"doc_id": NASTY[1:3], "page_index": {"gte": 2}}, PAGE_COLUMNS)
    assert store.query("pages_test", both).column("doc_id").to_pylist() == [NASTY[2]]
    assert store.count("pages_test", where_clause({"doc_id": []}, PAGE_COLUMNS)) == 0


def test_regex_any_quotes_each_pattern_and_matches_nothing_without_one():
    from mm_retriever.store.filters import MATCH_NOTHING, regex_any

    clause = regex_any("text", [r"^Figure\s+5\b", "it's"])
    assert clause == r"(regexp_like(text, '^Figure\s+5\b') OR regexp_like(text, 'it''s'))"
    assert regex_any("text", []) == MATCH_NOTHING
    with pytest.raises(ValueError, match="not a column name"):
        regex_any("text) OR (1=1", ["x"])
