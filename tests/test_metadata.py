"""Per-document metadata: stored once, returned on every hit, filtered inside every leg.

Real LanceDB, the real MiniLM (text, figure-text legs), BM25 and the tiny ColPali (page leg);
each filtered leg ranking is checked against a brute-force filter of the unfiltered one.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from metadata_corpus import FILTERS, assert_same_ranking, document_metadata, make_metadata_corpus
from pdfgen import make_sample_pdf
from shared_fixtures import bm25_index, text_index_config
from tiny_models import tiny_colpali  # noqa: F401  (session fixture)

from mm_retriever.config import LegSpec
from mm_retriever.index import MultimodalIndex
from mm_retriever.metadata import (
    check_doc_id,
    compile_filter,
    from_mongo,
    normalize,
    parse_pairs,
)
from mm_retriever.store import DOCUMENTS
from mm_retriever.store.filters import mongo_filters

LEGS = ["page", "text", "bm25", "figure"]
QUERIES = ["rainfall in Quillon province by decade", "survey sites listed in the appendix"]


# ------------------------------------------------------------------ the filter language
def test_filter_semantics() -> None:
    meta = {"tenant": "acme", "year": 2021, "tags": ["q3", "board"], "note": "Board Minutes"}
    cases = {
        "eq": ({"tenant": "acme"}, {"tenant": "globex"}),
        "list item": ({"tags": "q3"}, {"tags": "q1"}),
        "in": ({"tags": {"in": ["q1", "board"]}}, {"tags": {"in": ["q1"]}}),
        "nin": ({"tags": {"nin": ["q1"]}}, {"tags": {"nin": ["q3"]}}),
        "all": ({"tags": {"all": ["q3", "board"]}}, {"tags": {"all": ["q3", "q1"]}}),
        "any": ({"tags": {"any": ["x", "q3"]}}, {"tags": {"any": ["x"]}}),
        "contains": ({"tags": {"contains": "board"}}, {"note": {"contains": "board"}}),
        "text_match": ({"note": {"text_match": "Minutes"}}, {"note": {"text_match": "minutes"}}),
        "text_match_insensitive": ({"note": {"text_match_insensitive": "minutes"}}, {"x": 1}),
        "range": ({"year": {"gt": 2020, "lte": 2021}}, {"year": {"gte": 2022}}),
        "missing key": ({"region": {"ne": "eu"}}, {"region": "eu"}),
        "is_empty": ({"region": {"is_empty": True}}, {"tags": {"is_empty": True}}),
        "kinds differ": ({"year": {"ne": "2021"}}, {"year": "2021"}),
        "bool is not a number": ({"year": {"ne": True}}, {"year": {"gte": True}}),
        "or": ({"$or": [{"tenant": "x"}, {"year": 2021}]}, {"$or": [{"tenant": "x"}]}),
        "and": ({"$and": [{"tenant": "acme"}, {"year": 2021}]}, {"$and": [{"year": 1}]}),
        "not": ({"$not": {"tenant": "globex"}}, {"$not": {"tenant": "acme"}}),
        "nested": (
            {"$or": [{"$and": [{"tenant": "acme"}, {"tags": "q3"}]}, {"year": 1999}]},
            {"$or": [{"$and": [{"tenant": "acme"}, {"tags": "q1"}]}, {"year": 1999}]},
        ),
        "date": ({"when": {"is_empty": True}}, {"when": {"gte": dt.date(2020, 1, 1)}}),
    }
    for name, (yes, no) in cases.items():
        assert compile_filter(yes)(meta), name
        assert not compile_filter(no)(meta), name
    dated = {"date": "2021-03-04"}
    assert compile_filter({"date": {"gte": dt.date(2021, 1, 1)}})(dated)
    assert not compile_filter({"date": {"gt": dt.datetime(2021, 3, 4, 1, 0)}})(dated)


def test_filter_errors_name_the_key() -> None:
    bad = [
        ({"year": {"gtee": 1}}, "'year': unknown operator"),
        ({"year": {}}, "'year': unknown operator"),
        ({"tags": {"in": "q3"}}, "'tags': 'in' needs a list"),
        ({"when": {"gte": object()}}, "'when'.*cannot be compared"),
        ({"note": {"text_match": 3}}, "'note': 'text_match' needs a string"),
        ({"x": {"is_empty": "yes"}}, "'x': 'is_empty' needs true or false"),
        ({"$xor": []}, "unknown logical operator '\\$xor'"),
        ({"$or": []}, "'\\$or' needs a non-empty list"),
        ({"": 1}, "metadata keys are non-empty"),
    ]
    for spec, message in bad:
        with pytest.raises(ValueError, match=message):
            compile_filter(spec)
    with pytest.raises(ValueError, match="a metadata filter must be a mapping"):
        compile_filter(["tenant"])  # type: ignore[arg-type]


def test_metadata_values_and_cli_typing() -> None:
    assert parse_pairs(
        ["year=2021", "date=2021-03-04", "flag=true", "ratio=0.5", "tenant=acme", "t=a", "t=b"]
    ) == {
        "year": 2021,
        "date": "2021-03-04",
        "flag": True,
        "ratio": 0.5,
        "tenant": "acme",
        "t": ["a", "b"],
    }
    assert parse_pairs(["at=2021-03-04T10:30:00", "code=007x", "empty="]) == {
        "at": "2021-03-04T10:30:00",
        "code": "007x",
        "empty": "",
    }
    for pair, message in [
        ("novalue", "key=value"),
        ("date=2021-13-45", "'date'.*not a valid ISO date"),
        ("$or=1", "not starting with"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_pairs([pair])
    assert normalize({"d": dt.date(2021, 3, 4), "s": {"b", "a"}}) == {
        "d": "2021-03-04",
        "s": ["a", "b"],
    }
    for value, message in [({"a": 1}, "'nested': dict"), (float("nan"), "finite"), ([[1]], "list")]:
        with pytest.raises(ValueError, match=message):
            normalize({"nested": value})
    assert check_doc_id("court-filing_2021.v2") == "court-filing_2021.v2"
    for bad in ["", "../x", "a/b", ".hidden", "x" * 129, 5]:
        with pytest.raises(ValueError, match="is not allowed"):
            check_doc_id(bad)  # type: ignore[arg-type]


def test_mongo_style_filters() -> None:
    spec = {
        "source": "a.pdf",
        "page_index": {"$gte": 2},
        "tenant": "acme",
        "year": {"$gte": 2021, "$lt": 2024},
        "$or": [{"tags": {"$in": ["q3"]}}, {"draft": {"$eq": True}}],
    }
    assert mongo_filters(spec) == {
        "source": "a.pdf",
        "page_index": {"gte": 2},
        "metadata": {
            "tenant": "acme",
            "year": {"gte": 2021, "lt": 2024},
            "$or": [{"tags": {"in": ["q3"]}}, {"draft": {"eq": True}}],
        },
    }
    assert from_mongo({"note": {"$ilike": "x"}}) == {"note": {"text_match_insensitive": "x"}}
    with pytest.raises(ValueError, match="'year': unknown operator '\\$between'"):
        mongo_filters({"year": {"$between": [1, 2]}})
    with pytest.raises(ValueError, match="combined with AND at the top level"):
        mongo_filters({"$or": [{"source": "a.pdf"}, {"tenant": "acme"}]})


# --------------------------------------------------------------- an index with all legs
@pytest.fixture(scope="module")
def meta_index(tmp_path_factory, minilm_path: str, tiny_colpali: str):  # noqa: F811
    root = tmp_path_factory.mktemp("metadata")
    corpus = make_metadata_corpus(root / "docs")
    page = LegSpec(
        name="page", options={"encoder": {"name": "colpali", "options": {"model": tiny_colpali}}}
    )
    index = MultimodalIndex.create(root / "index", text_index_config(minilm_path, page))
    report = index.add([p for p, _ in corpus], metadata={str(p): m for p, m in corpus})
    assert report.ok and len(report.added) == len(corpus), report.failed
    by_doc = {report.doc_ids[str(p)]: m for p, m in corpus}
    return index, by_doc


@pytest.mark.parametrize("leg", LEGS)
def test_every_leg_filtered_equals_brute_force(meta_index, leg: str) -> None:
    index, by_doc = meta_index
    retriever = index.retriever(legs=[leg])
    checked = filled = 0
    for query in QUERIES:
        full = retriever.leg_hits(query, k=1000)[leg]
        assert len({h.doc_id for h in full}) == len(by_doc)  # the leg ranks every document
        for spec, wanted in FILTERS:
            for extra in ({}, {"page_index": {"lte": 1}}):
                allowed = [
                    h
                    for h in full
                    if wanted(by_doc[h.doc_id])
                    and (not extra or h.page_index <= extra["page_index"]["lte"])
                ]
                for k in (3, 5):
                    got = retriever.leg_hits(query, k=k, filters={"metadata": spec, **extra})
                    assert_same_ranking(got[leg], allowed, k)
                    checked += 1
                    filled += len(allowed) >= k and len(got[leg]) == k
    assert checked == len(QUERIES) * len(FILTERS) * 4 and filled > checked // 3


def test_hits_carry_their_documents_metadata(meta_index) -> None:
    index, by_doc = meta_index
    pages = index.retriever().retrieve("Quillon province", k=8, filters={"metadata": {}})
    assert len(pages) == 8
    for page in pages:
        assert page.metadata == by_doc[page.doc_id]
        assert page.to_dict()["metadata"] == by_doc[page.doc_id]
    docs = {d["doc_id"]: d for d in index.documents()}
    assert {d: docs[d]["metadata"] for d in by_doc} == by_doc
    assert all(docs[d]["content_hash"] == d for d in by_doc)
    assert all(docs[d]["file_metadata"]["media_type"] == "application/pdf" for d in by_doc)


def test_hybrid_filters_combine_with_document_keys(meta_index) -> None:
    index, by_doc = meta_index
    acme = sorted(d for d, m in by_doc.items() if m["tenant"] == "acme")
    source = next(d["source"] for d in index.documents() if d["doc_id"] == acme[0])
    retriever = index.retriever()
    pages = retriever.retrieve(
        "Quillon", k=10, filters={"source": source, "metadata": {"tenant": "acme"}}
    )
    assert pages and {p.doc_id for p in pages} == {acme[0]}
    pages = retriever.retrieve("Quillon", k=10, filters={"metadata": {"year": {"gte": 2023}}})
    recent = [d for d in index.documents() if d["metadata"]["year"] >= 2023]
    assert len(pages) == sum(d["n_pages"] for d in recent) == 7  # every page that matches
    assert {p.metadata["year"] for p in pages} == {2023, 2024}
    assert retriever.retrieve("Quillon", k=5, filters={"metadata": {"tenant": "none"}}) == []
    with pytest.raises(ValueError, match="'year': unknown operator"):
        retriever.retrieve("Quillon", filters={"metadata": {"year": {"after": 2020}}})
    with pytest.raises(ValueError, match=r"unknown filter column 'tenant'.*metadata"):
        retriever.retrieve("Quillon", filters={"tenant": "acme"})


# ------------------------------------------------------------- writing, ids, old indexes
@pytest.fixture
def two_pdfs(tmp_path: Path) -> tuple[Path, Path]:
    a = make_sample_pdf(tmp_path / "docs" / "fleet.pdf", ["The fleet has 47 ferries."])
    b = make_sample_pdf(tmp_path / "docs" / "canal.pdf", ["The canal opened in 1887."])
    return a, b


def test_set_metadata_changes_filters_without_reindexing(tmp_path, two_pdfs) -> None:
    a, b = two_pdfs
    index = bm25_index(tmp_path / "idx")
    report = index.add([a, b], metadata={"tenant": "acme", "year": 2020})
    ids = report.doc_ids
    pages_before = index.store.version("pages")
    assert index.set_metadata("fleet.pdf", {"tenant": "globex", "tags": ["q3"]}) == {
        "tenant": "globex",
        "year": 2020,
        "tags": ["q3"],
    }
    assert index.set_metadata(ids[str(b)], {"year": None, "x": 1}) == {"tenant": "acme", "x": 1}
    assert index.store.version("pages") == pages_before  # only the documents row changed
    retriever = MultimodalIndex.open(tmp_path / "idx").retriever()
    hits = retriever.retrieve("ferries canal", k=5, filters={"metadata": {"tenant": "globex"}})
    assert {p.doc_id for p in hits} == {ids[str(a)]}
    assert hits[0].metadata == {"tenant": "globex", "year": 2020, "tags": ["q3"]}
    assert index.set_metadata(str(a), {"only": True}, replace=True) == {"only": True}
    with pytest.raises(KeyError, match="no document"):
        index.set_metadata("nothing.pdf", {"a": 1})
    with pytest.raises(ValueError, match="'bad'"):
        index.set_metadata("fleet.pdf", {"bad": {"nested": 1}})


def test_own_ids_dedup_and_delete_by_name(tmp_path, two_pdfs) -> None:
    a, b = two_pdfs
    index = bm25_index(tmp_path / "idx")
    report = index.add(a, doc_id="fleet-2021", metadata={"tenant": "acme"})
    assert report.ok and report.doc_ids == {str(a): "fleet-2021"}
    (hit,) = index.retriever().retrieve("ferries", k=1)
    assert hit.doc_id == "fleet-2021" and hit.metadata == {"tenant": "acme"}
    assert hit.image() is not None  # rendered from the source file kept under the new id
    (doc,) = index.documents()
    assert doc["content_hash"] != "fleet-2021" and len(doc["content_hash"]) == 16

    again = index.add(a, doc_id="fleet-copy")  # same content: deduplicated by content hash
    assert again.unchanged == [str(a)] and again.doc_ids[str(a)] == "fleet-2021"
    assert "not added again as 'fleet-copy'" in again.warnings[str(a)]
    taken = index.add(b, doc_id="fleet-2021")
    assert "document id 'fleet-2021' is taken" in taken.failed[str(b)]
    assert len(index) == 1 and not index.store.pending() and index.check() == []
    with pytest.raises(ValueError, match="doc_id names one document"):
        index.add([a, b], doc_id="x")
    with pytest.raises(ValueError, match="is not allowed"):
        index.add(b, doc_id="../b")

    other = make_sample_pdf(tmp_path / "other" / "fleet.pdf", ["Another fleet of 12 barges."])
    index.add([b, other], doc_id={str(other): "fleet-other"})
    with pytest.raises(ValueError, match=r"'fleet\.pdf' names 2 documents: .*fleet-2021"):
        index.delete("fleet.pdf")
    assert len(index) == 3
    removed = index.delete(str(other))  # a path
    assert removed["doc_id"] == "fleet-other" and removed["source"] == str(other)
    assert index.delete("fleet.pdf")["doc_id"] == "fleet-2021"  # now one document has it
    assert index.delete("canal.pdf")["source"] == str(b)
    assert len(index) == 0 and index.check() == []
    with pytest.raises(KeyError, match="no document"):
        index.delete("fleet.pdf")


def test_metadata_mapping_by_folder_and_errors(tmp_path, two_pdfs) -> None:
    a, b = two_pdfs
    index = bm25_index(tmp_path / "idx")
    with pytest.raises(ValueError, match="not among the files"):
        index.add([a], metadata={str(b): {"x": 1}})
    report = index.add(
        [a.parent], metadata={str(a.parent): {"tenant": "acme"}, str(b): {"tenant": "b"}}
    )
    meta = {d["source"]: d["metadata"] for d in index.documents()}
    assert report.ok and meta == {str(a): {"tenant": "acme"}, str(b): {"tenant": "b"}}
    with pytest.raises(ValueError, match="'when'"):
        index.add([a], metadata={"when": object()})


def test_index_without_the_new_columns_opens_reads_and_takes_metadata(tmp_path, two_pdfs) -> None:
    """A schema-2 index written before user metadata: its documents table lacks the columns."""
    a, b = two_pdfs
    index = bm25_index(tmp_path / "idx")
    old_id = index.add(a).doc_ids[str(a)]
    index.store.table(DOCUMENTS).drop_columns(["user_metadata", "content_hash"])
    old = MultimodalIndex.open(tmp_path / "idx")
    assert "user_metadata" not in old.store.table(DOCUMENTS).schema.names
    (hit,) = old.retriever().retrieve("ferries", k=1)
    assert hit.doc_id == old_id and hit.metadata == {}
    assert old.documents()[0]["metadata"] == {} and old.documents()[0]["content_hash"] == old_id
    assert old.retriever().retrieve("ferries", filters={"metadata": {"x": 1}}) == []
    assert "user_metadata" not in old.store.table(DOCUMENTS).schema.names  # reading wrote nothing

    assert old.add(a).unchanged == [str(a)]  # dedup still by the content hash (= its doc_id)
    report = old.add(b, metadata={"tenant": "acme"})
    assert report.ok and report.added == [str(b)]
    assert "user_metadata" in old.store.table(DOCUMENTS).schema.names
    hits = old.retriever().retrieve("ferries canal", k=5, filters={"metadata": {"tenant": "acme"}})
    assert {h.doc_id for h in hits} == {report.doc_ids[str(b)]}
    assert old.set_metadata(old_id, {"tenant": "globex"}) == {"tenant": "globex"}
    assert {d["doc_id"]: d["metadata"] for d in old.documents()} == {
        old_id: {"tenant": "globex"},
        report.doc_ids[str(b)]: {"tenant": "acme"},
    }
    assert old.check() == []


def test_document_metadata_is_the_stored_json(meta_index) -> None:
    index, by_doc = meta_index
    rows = index.store.query(DOCUMENTS, columns=["doc_id", "user_metadata"]).to_pylist()
    import json

    assert {r["doc_id"]: json.loads(r["user_metadata"]) for r in rows} == by_doc
    assert document_metadata(0)["date"] == "2020-03-01"
