"""LangChain filter dicts over document metadata: each leg searches only matching documents."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_mm_retriever import MMRetriever
from metadata_corpus import FILTERS, assert_same_ranking

ONE_LEG = {"document_prior": 0, "pin_references": False}
QUERY = "rainfall in Quillon province by decade"


def mongo(spec: Any) -> Any:
    """A metadata filter of tests/metadata_corpus.py written LangChain (Mongo) style."""
    if isinstance(spec, list):
        return [mongo(s) for s in spec]
    if not isinstance(spec, dict):
        return spec
    out = {}
    for key, value in spec.items():
        if key.startswith("$"):
            out[key] = mongo(value)
        elif isinstance(value, dict):
            out[key] = {f"${op}": v for op, v in value.items()}
        else:
            out[key] = value
    return out


def key(doc: Any) -> tuple[str, int]:
    return (doc.metadata["doc_id"], doc.metadata["page_index"])


@pytest.mark.parametrize("leg", ["text", "bm25"])
def test_filter_equals_brute_force_over_the_unfiltered_ranking(meta_index, leg: str) -> None:
    index, by_doc = meta_index
    retriever = MMRetriever(index=index, retriever_kwargs={"legs": [leg], **ONE_LEG})
    full = retriever.invoke(QUERY, k=100)
    assert {d.metadata["doc_id"] for d in full} == set(by_doc)
    for d in full:  # the document's metadata is on every Document
        assert {k: d.metadata[k] for k in by_doc[d.metadata["doc_id"]]} == by_doc[
            d.metadata["doc_id"]
        ]
    for spec, wanted in FILTERS:
        allowed = [d for d in full if wanted(by_doc[d.metadata["doc_id"]])]
        for k in (2, 4):
            got = retriever.invoke(QUERY, k=k, filter=mongo(spec))
            # fused scores depend on ranks; the leg's own score does not
            raw = lambda d: d.metadata["leg_scores"][leg]  # noqa: E731
            assert_same_ranking(got, allowed, k, key=key, score=raw)
            assert all(wanted(d.metadata) for d in got)


def test_filter_combines_with_document_fields_and_filters(meta_index) -> None:
    index, by_doc = meta_index
    acme = sorted(d for d, m in by_doc.items() if m["tenant"] == "acme")
    retriever = MMRetriever(index=index, k=20, filter={"tenant": "acme"})
    assert {d.metadata["doc_id"] for d in retriever.invoke(QUERY)} == set(acme)
    docs = retriever.invoke(QUERY, filter={"doc_id": acme[0], "page_index": {"$lte": 1}})
    assert {key(d) for d in docs} == {(acme[0], 0), (acme[0], 1)}
    docs = retriever.invoke(QUERY, filters={"metadata": {"year": 2019}})  # AND with `filter`
    assert {d.metadata["doc_id"] for d in docs} == {d for d in acme if by_doc[d]["year"] == 2019}
    with pytest.raises(ValueError, match="'year': unknown operator '\\$after'"):
        retriever.invoke(QUERY, filter={"year": {"$after": 2020}})
    with pytest.raises(ValueError, match="combined with AND at the top level"):
        retriever.invoke(QUERY, filter={"$or": [{"source": "x.pdf"}, {"tenant": "acme"}]})
