"""BM25 leg (bm25s over the leg table): units, stemming, filters, freshness after writes."""

from __future__ import annotations

import pytest

from mm_retriever.legs.bm25 import BM25Retriever
from mm_retriever.protocols import Query
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
    assert scores(leg, store, "running cat")  # the in-memory index is built here
    store.add(leg.table, leg.rows(pages([("b", 0)])), leg.schema())
    # a query after a write sees fresh statistics (the table version changed)
    after_add = scores(leg, store, "running cat")
    fresh = LanceDBStore(tmp_path / "fresh")
    write(fresh, BM25Retriever(), pages())
    assert after_add == pytest.approx(scores(BM25Retriever(), fresh, "running cat"))

    store.delete_document("b")
    only_a = LanceDBStore(tmp_path / "only_a")
    write(only_a, BM25Retriever(), pages([("a", 0), ("a", 1)]))
    assert scores(leg, store, "running cat") == pytest.approx(
        scores(BM25Retriever(), only_a, "running cat")
    )
    # another process opening the table reads it and never writes to it
    again = BM25Retriever()
    version = store.table(leg.table).version
    assert scores(again, LanceDBStore(tmp_path / "idx"), "revenue")
    assert store.table(leg.table).version == version


def test_scores_equal_bm25s_over_the_same_text(tmp_path) -> None:
    import bm25s
    import Stemmer

    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever()
    write(store, leg, pages())
    texts = [p.text for p in pages()]
    stemmer = Stemmer.Stemmer("english")
    ref = bm25s.BM25()
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False))
    q = bm25s.tokenize(["running revenue"], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, ref_scores = ref.retrieve(q, k=3, show_progress=False)
    keys = list(TEXTS)
    ranked = zip(docs[0], ref_scores[0], strict=True)
    expected = {keys[int(d)]: float(s) for d, s in ranked if s > 0}
    assert scores(leg, store, "running revenue") == pytest.approx(expected)


def test_accents_folded_filters_and_languages(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever(unit="chunk", name="bm25-chunks")
    cafe = "Le café était fermé."
    extra = Page("c", 0, 612, 792, text=cafe, chunks=[Chunk(cafe, 0)])
    write(store, leg, [*pages(), extra])
    assert set(scores(leg, store, "cafe")) == {("c", 0)}
    assert set(scores(leg, store, "CAFÉ")) == {("c", 0)}
    assert set(scores(leg, store, "running", where="doc_id = 'a'")) == {("a", 0)}
    assert scores(leg, store, "running", where="doc_id = 'zzz'") == {}
    assert leg.retrieve(store, Query("running"), 0) == []
    german = BM25Retriever(language="German")
    assert german.tokenize(["Die Katzen laufen"]) == [["katz", "lauf"]]
    with pytest.raises(ValueError, match="stemmer"):
        BM25Retriever(language="Klingon")
    with pytest.raises(ValueError, match="stop word"):
        BM25Retriever(language="Finnish")
    assert BM25Retriever(language="Finnish", remove_stop_words=False).tokenize(["talot"])


def test_empty_table_and_unknown_terms(tmp_path) -> None:
    store = LanceDBStore(tmp_path / "idx")
    leg = BM25Retriever()
    assert leg.retrieve(store, Query("anything"), 5) == []  # no table yet
    write(store, leg, pages())
    assert leg.retrieve(store, Query("zeppelin"), 5) == []


def test_stop_word_names_are_those_bm25s_knows() -> None:
    """The leg checks its language against a list kept here (no bm25s/scipy import when the
    index is opened): every name on it is one bm25s has a list for, and others are refused."""
    from bm25s.tokenization import _infer_stopwords

    from mm_retriever.legs.bm25 import BM25S_STOPWORDS, BM25Retriever

    for name in BM25S_STOPWORDS:
        assert len(_infer_stopwords(name)) > 10, name
    with pytest.raises(ValueError):
        _infer_stopwords("klingon")
    with pytest.raises(ValueError, match="klingon"):
        BM25Retriever(language="klingon", stem=False)
    assert BM25Retriever(language="German").config()["language"] in ("German", "german")
