"""LlamaIndex MetadataFilters over document metadata: mapped onto mm-retriever's filters, so each
leg searches only the matching documents."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.mm_retriever import MMRetriever, metadata_filters_to_mm
from metadata_corpus import assert_same_ranking

ONE_LEG = {"document_prior": 0, "pin_references": False}
QUERY = "rainfall in Quillon province by decade"
F, OP = MetadataFilter, FilterOperator


def group(*filters: Any, condition: FilterCondition = FilterCondition.AND) -> MetadataFilters:
    return MetadataFilters(filters=list(filters), condition=condition)


OR, NOT = FilterCondition.OR, FilterCondition.NOT
CASES = [
    (group(F(key="tenant", value="acme")), lambda m: m["tenant"] == "acme"),
    (
        group(
            F(key="year", value=2021, operator=OP.GTE), F(key="year", value=2024, operator=OP.LT)
        ),
        lambda m: 2021 <= m["year"] < 2024,
    ),
    (
        group(F(key="tags", value=["q3", "board"], operator=OP.ANY)),
        lambda m: bool({"q3", "board"} & set(m["tags"])),
    ),
    (
        group(F(key="tags", value=["q1", "ops"], operator=OP.ALL)),
        lambda m: {"q1", "ops"} <= set(m["tags"]),
    ),
    (
        group(F(key="tenant", value=["acme", "initech"], operator=OP.NIN)),
        lambda m: m["tenant"] == "globex",
    ),
    (
        group(
            F(key="region", value="eu"), F(key="weight", value=0.5, operator=OP.LT), condition=OR
        ),
        lambda m: m.get("region") == "eu" or m["weight"] < 0.5,
    ),
    (
        group(
            F(key="tenant", value="acme"),
            group(
                F(key="year", value=2023, operator=OP.GTE),
                F(key="tags", value="board", operator=OP.CONTAINS),
                condition=OR,
            ),
        ),
        lambda m: m["tenant"] == "acme" and (m["year"] >= 2023 or "board" in m["tags"]),
    ),
    (group(F(key="region", value=None, operator=OP.IS_EMPTY)), lambda m: "region" not in m),
    (
        group(F(key="tenant", value="GLOB", operator=OP.TEXT_MATCH_INSENSITIVE)),
        lambda m: m["tenant"] == "globex",
    ),
    (group(F(key="tenant", value="acme"), condition=NOT), lambda m: m["tenant"] != "acme"),
]


def text_nodes(retriever: MMRetriever) -> list:
    return [
        n for n in retriever.retrieve(QueryBundle(QUERY)) if n.node.metadata["kind"] == "page_text"
    ]


def key(n: Any) -> tuple[str, int]:
    return (n.node.metadata["doc_id"], n.node.metadata["page_index"])


@pytest.mark.parametrize("leg", ["text", "bm25"])
def test_metadata_filters_equal_brute_force(meta_index, leg: str) -> None:
    index, by_doc = meta_index
    hybrid = index.retriever(legs=[leg], **ONE_LEG)
    full = text_nodes(MMRetriever(hybrid, similarity_top_k=100))
    assert {n.node.metadata["doc_id"] for n in full} == set(by_doc)
    for n in full:  # the document's metadata is on every node
        meta = by_doc[n.node.metadata["doc_id"]]
        assert {k: n.node.metadata[k] for k in meta} == meta
    for filters, wanted in CASES:
        allowed = [n for n in full if wanted(by_doc[n.node.metadata["doc_id"]])]
        for k in (2, 4):
            got = text_nodes(MMRetriever(hybrid, similarity_top_k=k, filters=filters))
            # fused scores depend on ranks; the leg's own score does not
            raw = lambda n: n.node.metadata["leg_scores"][leg]  # noqa: E731
            assert_same_ranking(got, allowed, k, key=key, score=raw)


def test_document_fields_and_errors(meta_index) -> None:
    index, by_doc = meta_index
    acme = sorted(d for d, m in by_doc.items() if m["tenant"] == "acme")
    filters = group(F(key="doc_id", value=acme[0]), F(key="page_index", value=1, operator=OP.LTE))
    assert metadata_filters_to_mm(filters) == {"doc_id": acme[0], "page_index": {"lte": 1}}
    nodes = text_nodes(MMRetriever(index=index, similarity_top_k=10, filters=filters))
    assert {key(n) for n in nodes} == {(acme[0], 0), (acme[0], 1)}
    assert metadata_filters_to_mm({"metadata": {"tenant": "acme"}}) == {
        "metadata": {"tenant": "acme"}
    }
    with pytest.raises(ValueError, match="combined with AND at the top level"):
        metadata_filters_to_mm(
            group(
                F(key="source", value="a.pdf"),
                F(key="tenant", value="x"),
                condition=FilterCondition.OR,
            )
        )
    bad = MMRetriever(index=index, filters=group(F(key="year", value="x", operator=OP.ANY)))
    with pytest.raises(ValueError, match="'year': 'any' needs a list"):
        bad.retrieve(QueryBundle(QUERY))
