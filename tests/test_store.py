"""LanceDBStore on a real local LanceDB: manifest, rows, deletes, orphans, vector columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mm_retriever.index.rows import document_row
from mm_retriever.store import DOCUMENTS, MANIFEST, PAGES, LanceDBStore, leg_table
from mm_retriever.store.arrow import (
    multivector_array,
    multivector_type,
    multivectors_from_arrow,
    rows_to_table,
    vector_type,
    vectors_from_arrow,
)
from mm_retriever.store.schema import DOCUMENTS_SCHEMA, PAGES_SCHEMA
from mm_retriever.types import Document

LEG_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int32()),
        ("vector", vector_type(3)),
        ("vectors", multivector_type(3, "float16")),
    ]
)


def page(doc_id: str, i: int) -> dict:
    return {
        "doc_id": doc_id,
        "page_index": i,
        "width": 612.0,
        "height": 792.0,
        "text": f"page {i} of {doc_id}",
        "layer_text": "",
        "ocr_text": "",
        "text_source": "layer",
        "image": b"\xff\xd8fake",
        "image_mime": "image/jpeg",
    }


def leg_row(doc_id: str, i: int, n: int = 2) -> dict:
    rng = np.random.default_rng(i)
    return {
        "doc_id": doc_id,
        "page_index": i,
        "vector": rng.random(3),
        "vectors": rng.random((n, 3)),
    }


def write_doc(store: LanceDBStore, doc_id: str, n: int, commit: bool = True) -> None:
    store.add(PAGES, [page(doc_id, i) for i in range(n)], PAGES_SCHEMA)
    store.add(leg_table("x"), [leg_row(doc_id, i, i + 1) for i in range(n)], LEG_SCHEMA)
    if commit:
        doc = Document(doc_id, f"/data/{doc_id}.pdf", title=doc_id.upper(), metadata={"k": 1})
        store.add(DOCUMENTS, [document_row(doc, n)], DOCUMENTS_SCHEMA)


def test_manifest_round_trip(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    assert store.read_manifest() is None
    store.write_manifest({"config": {"legs": [{"name": "bm25"}]}, "schema_version": 1})
    store.write_manifest({"updated_at": "now", "schema_version": 1})
    again = LanceDBStore(tmp_path / "idx").read_manifest()
    assert again == {
        "config": {"legs": [{"name": "bm25"}]},
        "schema_version": 1,
        "updated_at": "now",
    }
    assert store.count(MANIFEST) == 3


def test_documents_delete_and_orphans(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    write_doc(store, "aaa", 3)
    write_doc(store, "bbb", 2)
    write_doc(store, "ccc", 2, commit=False)  # a crash before the commit marker
    assert store.document_ids() == {"aaa", "bbb"}
    docs = store.documents()
    assert [d["doc_id"] for d in docs] == ["aaa", "bbb"]
    assert docs[0]["metadata"] == {"k": 1} and docs[0]["n_pages"] == 3
    assert store.orphan_ids() == {"ccc"}
    # no marker proves "ccc" is a failed write: recovery leaves it alone
    assert not store.recover() and store.orphan_ids() == {"ccc"}
    store.mark_pending("ccc", "add")  # what a writer commits before its first row
    assert store.orphan_ids() == set()
    assert store.recover().undone == ["ccc"] and store.pending() == []
    assert store.count(PAGES) == 5 and store.count(leg_table("x")) == 5

    store.delete_document("aaa")
    for table in (PAGES, DOCUMENTS, leg_table("x")):
        assert store.count(table, "doc_id = 'aaa'") == 0
    assert store.count(PAGES) == 2
    assert store.has_document("bbb") and not store.has_document("aaa")


def test_multivectors_round_trip(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    write_doc(store, "aaa", 4)
    data = store.query(leg_table("x"), "page_index >= 1", ["page_index", "vector", "vectors"])
    mats = multivectors_from_arrow(data.column("vectors"))
    vecs = vectors_from_arrow(data.column("vector"))
    rows = zip(data.column("page_index").to_pylist(), mats, vecs, strict=True)
    for i, mat, vec in rows:
        want = leg_row("aaa", i, i + 1)
        assert mat.dtype == np.float16 and mat.shape == (i + 1, 3)
        np.testing.assert_allclose(mat, want["vectors"], atol=1e-3)
        np.testing.assert_allclose(vec, want["vector"], rtol=1e-6)


def test_rows_to_table_checks() -> None:
    with pytest.raises(ValueError, match="not in the table schema"):
        rows_to_table([{"doc_id": "a", "oops": 1}], LEG_SCHEMA)
    with pytest.raises(ValueError, match="dim 3"):
        rows_to_table([{"doc_id": "a", "page_index": 0, "vector": np.ones(4)}], LEG_SCHEMA)
    t = multivector_type(2, "float32")
    arr = multivector_array([np.zeros((0, 2)), np.ones((2, 2))], t)
    assert [m.shape for m in multivectors_from_arrow(arr)] == [(0, 2), (2, 2)]


def test_add_requires_doc_id_and_reports_bytes(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    with pytest.raises(ValueError, match="doc_id"):
        store.add("leg_bad", [{"page_index": 1}], None)
    write_doc(store, "aaa", 2)
    sizes = store.table_bytes()
    assert set(sizes) == {DOCUMENTS, PAGES, leg_table("x")}
    assert all(v > 0 for v in sizes.values())
    assert store.query("missing_table", columns=["doc_id"]).num_rows == 0
    assert store.version("missing_table") == -1
