"""Document prior: whole-document BM25 re-ranks corpus-wide pages in a known way."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from pdfgen import add_text_page, save_pdf
from shared_fixtures import bm25_index

from mm_retriever.index import MultimodalIndex
from mm_retriever.ranking.document_prior import DocumentPrior, _file_words, page_votes
from mm_retriever.ranking.fusion import apply_document_prior
from mm_retriever.types import FusedHit

QUERY = "By how much did Northwind revenues increase?"


def _pdf(path: Path, title: str, pages: list[tuple[str, str]]) -> Path:
    doc = pymupdf.open()
    for heading, body in pages:
        add_text_page(doc, heading, [body])
    doc.set_metadata({"title": title})
    return save_pdf(doc, path)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior")
    northwind = _pdf(
        root / "docs" / "northwind.pdf",
        "Northwind Traders annual report",
        [
            ("Overview", "Northwind Traders sells tea and coffee across Europe since 1990."),
            ("Results", "Revenues increased by 19 percent in the fiscal year."),
        ],
    )
    acme = _pdf(
        root / "docs" / "acme.pdf",
        "Acme Corporation review",
        [
            (
                "Results",
                "Revenues increased sharply. Revenues increased again, and revenues "
                "increased by 19 percent.",
            )
        ],
    )
    idx = bm25_index(root / "idx")
    idx.add([northwind, acme])
    ids = {d["source"].rsplit("/", 1)[-1]: d["doc_id"] for d in idx.documents()}
    return idx, ids


def _order(pages) -> list[tuple[str, int]]:
    return [(p.doc_id, p.page_index) for p in pages]


def test_prior_moves_the_named_documents_page_up(index) -> None:
    idx, ids = index
    nw_results, acme_results = (ids["northwind.pdf"], 1), (ids["acme.pdf"], 0)
    plain = _order(idx.retriever(document_prior=0).retrieve(QUERY, k=3))
    # page BM25 alone: Acme's page repeats "revenues increased" and outranks Northwind's
    assert plain.index(acme_results) < plain.index(nw_results)
    prior = idx.retriever(document_prior=DocumentPrior(1.0, source="bm25"))
    ranked = prior.retrieve(QUERY, k=3)
    order = _order(ranked)
    # the whole Northwind document names the company, so its results page moves above Acme's
    assert order.index(nw_results) < order.index(acme_results)
    assert ranked[0].leg_scores["document"] > 0
    # within one document the prior changes nothing
    only_acme = {"doc_id": ids["acme.pdf"]}
    assert _order(prior.retrieve(QUERY, k=3, filters=only_acme)) == _order(
        idx.retriever(document_prior=0).retrieve(QUERY, k=3, filters=only_acme)
    )


def test_document_scores_use_title_and_text(index) -> None:
    idx, ids = index
    scores = DocumentPrior(1.0).scores(idx.store, "Northwind")
    assert scores[ids["northwind.pdf"]] > 0 and scores.get(ids["acme.pdf"], 0.0) == 0
    assert DocumentPrior(1.0).scores(idx.store, "zzz unknown") == {}
    assert DocumentPrior(1.0).scores(idx.store, "Acme Corporation")[ids["acme.pdf"]] > 0


def test_apply_document_prior_arithmetic() -> None:
    hits = [FusedHit("a", 0, 3.0), FusedHit("b", 0, 2.0), FusedHit("b", 1, 1.0)]
    # page z-scores: +1.22, 0, -1.22; doc z-scores: a -1, b +1
    out = apply_document_prior(hits, {"a": 0.0, "b": 2.0}, weight=1.0)
    assert [(h.doc_id, h.page_index) for h in out] == [("b", 0), ("a", 0), ("b", 1)]
    assert out[0].score == pytest.approx(1.0)
    assert out[1].score == pytest.approx(1.2247449 - 1.0)
    again = [FusedHit("a", 0, 3.0), FusedHit("b", 0, 2.0)]
    assert apply_document_prior(again, {}, 1.0) == again  # no document scores: unchanged
    assert apply_document_prior(again, {"a": 1.0, "b": 0.0}, 0.0) == again
    with pytest.raises(ValueError, match="weight"):
        DocumentPrior(-1.0)


def test_page_votes_prior_prefers_the_document_with_several_good_pages() -> None:
    # one lucky page of "x" on top, but "y" has three good pages among the top ones
    fused = [
        FusedHit("x", 0, 3.0),
        FusedHit("y", 4, 2.5),
        FusedHit("y", 5, 2.4),
        FusedHit("y", 9, 2.0),
        FusedHit("x", 7, 0.1),
        FusedHit("z", 0, 0.0),
    ]
    votes = page_votes(fused, top=5)
    assert votes == pytest.approx({"x": 3.1, "y": 6.9})  # z is not among the top 5
    prior = DocumentPrior(1.0, source="pages", top_pages=5)
    assert prior.document_scores(None, "ignored", fused) == votes  # type: ignore[arg-type]
    out = apply_document_prior(
        [FusedHit(h.doc_id, h.page_index, h.score) for h in fused], votes, 1.0
    )
    assert [(h.doc_id, h.page_index) for h in out][:3] == [("y", 4), ("y", 5), ("y", 9)]
    assert out[-1].doc_id == "z"  # a document without votes gets the lowest prior
    with pytest.raises(ValueError, match="source"):
        DocumentPrior(1.0, source="title")  # type: ignore[arg-type]


def test_file_words() -> None:
    assert _file_words("/data/NIKE_2021_10K.pdf") == "NIKE 2021 10K"
    assert _file_words("report") == "report"


def test_writers_keep_one_document_text_row_per_document(index) -> None:
    from mm_retriever.store.schema import DOCUMENT_TEXT
    from mm_retriever.store.table_indexes import find_index

    idx, ids = index
    rows = {r["doc_id"]: r["text"] for r in idx.store.query(DOCUMENT_TEXT).to_pylist()}
    assert set(rows) == set(ids.values())
    northwind = rows[ids["northwind.pdf"]]
    assert northwind.count("Northwind Traders annual report northwind") == 3  # title, file name
    assert northwind.index("sells tea") < northwind.index("Revenues increased by 19")
    assert find_index(idx.store.table(DOCUMENT_TEXT), "text", "fts") is not None
    # the full-text index ranks documents as the in-memory BM25 of the same texts does
    prior = DocumentPrior(1.0)
    for query in (QUERY, "Acme revenues", "tea and coffee"):
        fts = prior.scores(idx.store, query)
        memory = prior._in_memory_scores(idx.store, query)
        assert sorted(fts, key=fts.get) == sorted(
            (d for d in memory if memory[d] > 0), key=memory.get
        )


def test_the_default_retriever_uses_the_bm25_prior(index) -> None:
    idx, _ = index
    retriever = idx.retriever()
    assert retriever.document_prior is not None
    assert (retriever.document_prior.source, retriever.document_prior.weight) == ("bm25", 0.5)
    assert idx.retriever(document_prior=0).document_prior is None
    pages = retriever.retrieve(QUERY, k=3)
    assert "document" in pages[0].leg_scores


def test_delete_and_migrate_keep_document_text_in_step(tmp_path) -> None:
    from mm_retriever.store.schema import DOCUMENT_TEXT
    from mm_retriever.store.table_indexes import find_index

    files = [
        _pdf(tmp_path / "docs" / f"{name}.pdf", f"{name} report", [("Results", body)])
        for name, body in (
            ("north", "Revenues grew in the north."),
            ("south", "Revenues fell in the south."),
            ("west", "Revenues held in the west."),
        )
    ]
    idx = bm25_index(tmp_path / "idx")
    idx.add(files)
    ids = {d["source"].rsplit("/", 1)[-1]: d["doc_id"] for d in idx.documents()}
    idx.delete(ids["west.pdf"])
    texts = idx.store.query(DOCUMENT_TEXT, None, ["doc_id"]).column("doc_id").to_pylist()
    assert sorted(texts) == sorted([ids["north.pdf"], ids["south.pdf"]])
    # an index written before the table existed: the prior scores in memory until migrated
    idx.store.db.drop_table(DOCUMENT_TEXT)
    tables = [t for t in idx.manifest()["tables"] if t != DOCUMENT_TEXT]
    idx.store.write_manifest({"tables": tables})
    old = MultimodalIndex.open(tmp_path / "idx")
    assert not old.store.has_table(DOCUMENT_TEXT)
    assert DocumentPrior(1.0).scores(old.store, "north")[ids["north.pdf"]] > 0
    report = old.migrate()
    assert report.document_texts == 2
    assert DOCUMENT_TEXT in old.manifest()["tables"]
    assert find_index(old.store.table(DOCUMENT_TEXT), "text", "fts") is not None
    assert old.migrate().document_texts == 0  # idempotent
    scores = DocumentPrior(1.0).scores(old.store, "north")
    assert set(scores) == {ids["north.pdf"]}
