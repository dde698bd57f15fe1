"""BM25 leg over LanceDB's native full-text index: units, stemming, freshness after writes."""

from __future__ import annotations

import pytest

from mm_retriever.protocols import Query
from mm_retriever.retrievers.bm25 import BM25Retriever
from mm_retriever.store import LanceDBStore
from mm_retriever.types import Chunk, Page

TEXTS = {
    ("a", 0): ["The cats were running across the orchard.", "Nothing else happened."],
    ("a", 1): ["Quarterly revenue grew 12% in 2020.", "Revenue from services fell."],
    ("b", 0): ["A dog barked at the running cat.", "Then it slept."],
}


def pages(keys=None) -> list[Page]:
    out = []
    for (doc, i), chunks in TEXTS.items():
        if keys is None or (doc, i) in keys:
            out.append(
                Page(
                    doc,
                    i,
                    612,
                    792,
                    text="\n".join(chunks),
                    chunks=[Chunk(t, j) for j, t in enumerate(chunks)],
                )
            )
    return out


def write(store: LanceDBStore, leg: BM25Retriever, batch: list[Page]) -> None:
    store.add(leg.table, leg.rows(batch), leg.schema())
    leg.refresh(store)


def scores(leg: BM25Retriever, store: LanceDBStore, q: str, **kw) -> dict:
    return {h.key: h.score for h in leg.retrieve(store, Query(q), 10, **kw)}


def test_page_unit_with_stemming_and_stopwords(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever()
    write(store, leg, pages())
    hits = leg.retrieve(store, Query("cat runs"), 10)
    assert {h.key for h in hits} == {("a", 0), ("b", 0)}  # cats/cat, running/runs stemmed
    assert [h.rank for h in hits] == [1, 2] and hits[0].matched == []
    assert leg.retrieve(store, Query("the of and"), 10) == []  # stop words only
    assert scores(leg, store, "revenue", where="doc_id = 'b'") == {}
    assert leg.retrieve(store, Query(image=None, text="x' OR 1=1 --"), 5) == []  # plain words


def test_chunk_unit_reports_best_chunk(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever(unit="chunk", name="bm25-chunks")
    write(store, leg, pages())
    (hit,) = leg.retrieve(store, Query("services revenue"), 10)
    assert hit.key == ("a", 1) and hit.matched == [1, 0]
    assert hit.matched_text == "Revenue from services fell."
    assert hit.matched_scores[0] == hit.score > hit.matched_scores[1]
    with pytest.raises(ValueError, match="unit"):
        BM25Retriever(unit="sentence")  # type: ignore[arg-type]


def test_statistics_follow_adds_and_deletes(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever()
    write(store, leg, pages([("a", 0), ("a", 1)]))
    store.add(leg.table, leg.rows(pages([("b", 0)])), leg.schema())
    # a query after a write outside the index's refresh still sees fresh statistics
    after_add = scores(leg, store, "running cat")
    fresh = LanceDBStore(tmp_path / "fresh")
    write(fresh, BM25Retriever(), pages())
    assert after_add == pytest.approx(scores(BM25Retriever(), fresh, "running cat"))

    store.delete_document("b")
    leg.refresh(store)
    only_a = LanceDBStore(tmp_path / "only_a")
    write(only_a, BM25Retriever(), pages([("a", 0), ("a", 1)]))
    assert scores(leg, store, "running cat") == pytest.approx(
        scores(BM25Retriever(), only_a, "running cat")
    )
    # another process opening the table trusts an index that covers every row
    again = BM25Retriever()
    version = store.table(leg.table).version
    assert scores(again, LanceDBStore(tmp_path / "idx"), "revenue")
    assert store.table(leg.table).version == version
