"""MultimodalIndex end to end on real PDFs, real LanceDB and the real MiniLM + BM25.

Covers: answer pages found, reopen gives the same results, incremental add, re-adding
unchanged files does nothing, delete by id everywhere, bad files reported while the rest is
indexed, a failure inside a leg leaves no partial rows, orphan cleanup, skipped legs.
"""

from __future__ import annotations

import gc
import logging
import weakref
from pathlib import Path

import pytest
from pdfgen import (
    make_corrupt_pdf,
    make_encrypted_pdf,
    make_mixed_pdf,
    make_sample_pdf,
    make_unsupported_file,
)
from shared_fixtures import minilm_encoder, text_index_config

from mm_retriever import registry
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import IndexExistsError, IndexNotFoundError, MultimodalIndex
from mm_retriever.legs.base import build_encoder
from mm_retriever.legs.bm25 import BM25Retriever
from mm_retriever.store import DOCUMENTS, FIGURES, PAGES, SCHEMA_VERSION, leg_table
from mm_retriever.store.schema import FILINGS, PAGE_SECTIONS
from mm_retriever.types import Page

FACTS = [
    "The capital of Freedonia is Lumen, a city on the river Ostrava.",
    "Bananas from Ecuador are shipped to Rotterdam in refrigerated containers.",
    "The airship Hindmarsh crossed the Atlantic in 1931 carrying 42 passengers.",
    "Glacier Veltrin lost eleven metres of ice thickness between 1990 and 2020.",
]
MORE_FACTS = [
    "The Quorvane bridge has nine spans and opened in 1964.",
    "A violin made by Ostrander in 1711 sold for two million florins.",
]


@pytest.fixture(scope="module")
def minilm(minilm_path: str):
    """Keeps the MiniLM encoder alive (shared by every index of this module)."""
    return build_encoder(minilm_encoder(minilm_path))


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    make_sample_pdf(folder / "facts.pdf", FACTS, title="Facts of the world")
    make_mixed_pdf(folder / "mixed.pdf")
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory, docs, minilm, minilm_path):
    uri = tmp_path_factory.mktemp("idx") / "index"
    index = MultimodalIndex.create(uri, text_index_config(minilm_path))
    report = index.add([docs])
    return index, report


def counts(index: MultimodalIndex, doc_id: str | None = None) -> dict[str, int]:
    where = f"doc_id = '{doc_id}'" if doc_id else None
    return {t: index.store.count(t, where) for t in index.store.doc_tables()}


def test_add_reports_and_finds_answer_pages(built) -> None:
    index, report = built
    assert not report.failed
    assert len(report.added) == 2 and report.pages == 4 + 5
    assert {"ingest", "write", "encode:text", "encode:bm25", "render"} <= set(report.timings)
    assert index.num_pages() == 9 and len(index.documents()) == 2
    retriever = index.retriever()
    for page_index, question in enumerate(
        [
            "What is the capital of Freedonia?",
            "Where are Ecuadorian bananas shipped?",
            "How many passengers did the Hindmarsh airship carry across the Atlantic?",
            "How much ice did glacier Veltrin lose?",
        ]
    ):
        top = retriever.retrieve(question, k=3)
        assert top[0].source.endswith("facts.pdf"), question
        assert top[0].page_index == page_index, question
        assert top[0].leg_ranks["text"] == 1 and top[0].leg_ranks["bm25"] == 1
        assert FACTS[page_index].split(",")[0] in top[0].text
        assert FACTS[page_index].split(" ")[1] in top[0].matched_text


def test_retrieved_page_fields(built) -> None:
    index, _ = built
    (page,) = index.retriever().retrieve("Zorblax observatory meteor sightings", k=1)
    assert page.source.endswith("mixed.pdf") and page.page_index == 0
    assert page.title == "Mixed test report" and page.citation == "mixed.pdf, p. 1"
    assert page.width == pytest.approx(612) and page.height == pytest.approx(792)
    assert page.image_mime == "image/jpeg" and page.image().size == (612, 792)  # 72 dpi
    assert page.image_path and Path(page.image_path).read_bytes() == page.image_bytes
    assert page.score > 0 and set(page.leg_ranks) <= set(page.leg_scores)
    assert set(page.leg_scores) - set(page.leg_ranks) <= {"document", "reference"}
    chart = index.retriever().retrieve("Revenue of Tarragant Motors by region", k=1)[0]
    assert chart.page_index == 3 and chart.leg_ranks["figure"] == 1
    assert chart.figures and chart.figures[0].caption.startswith("Figure 2")
    assert chart.figures[0].image().format == "PNG"


def test_reopen_rebuilds_config_and_results(built, minilm) -> None:
    index, _ = built
    questions = ["capital of Freedonia", "rainfall by decade chart", "airship passengers"]
    before = [index.retriever().retrieve(q, k=4) for q in questions]
    reopened = MultimodalIndex.open(index.uri)
    assert reopened.config == index.config
    assert list(reopened.legs) == list(index.legs)
    assert reopened.legs["text"].encoder is index.legs["text"].encoder  # shared, not reloaded
    manifest = reopened.manifest()
    assert manifest["schema_version"] == SCHEMA_VERSION and "lancedb" in manifest["versions"]
    assert IndexConfig.model_validate(manifest["config"]) == index.config
    stored_text = manifest["config"]["legs"][0]["options"]["encoder"]["options"]
    assert stored_text["model"] == index.legs["text"].encoder.model_name
    for q, old in zip(questions, before, strict=True):
        new = reopened.retriever().retrieve(q, k=4)
        assert [p.key for p in new] == [p.key for p in old]
        assert [p.score for p in new] == pytest.approx([p.score for p in old])
        assert [p.leg_scores for p in new] == [p.leg_scores for p in old]


def test_one_encoder_instance_per_resolved_settings(minilm_path) -> None:
    """A reopened index's resolved spec built first (and kept alive), then the config's short
    spec: both get the one instance, in either order (the reopen test above once depended on
    the order test modules ran in)."""
    from mm_retriever.legs.base import build_encoder, resolved_spec

    short = minilm_encoder(minilm_path)
    short["options"]["batch_size"] = 7  # settings no other test uses: a fresh cache entry
    first = build_encoder(short, device="cpu")
    resolved = resolved_spec(short["name"], first)
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None  # nothing holds the first instance: the cache forgot it
    by_resolved = build_encoder(resolved, device="cpu")
    assert build_encoder(short, device="cpu") is by_resolved
    assert build_encoder(resolved, device="cpu") is by_resolved


def test_create_and_open_errors(tmp_path, built) -> None:
    index, _ = built
    assert MultimodalIndex.exists(index.uri)
    assert not MultimodalIndex.exists(tmp_path / "nothing")
    with pytest.raises(IndexExistsError, match="overwrite=True"):
        MultimodalIndex.create(index.uri, index.config)
    with pytest.raises(IndexNotFoundError, match="no mm-retriever index"):
        MultimodalIndex.open(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_incremental_add_unchanged_and_delete(tmp_path, docs, minilm, minilm_path) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", text_index_config(minilm_path))
    first = index.add([docs / "facts.pdf"])
    assert first.pages == 4
    more = make_sample_pdf(tmp_path / "more.pdf", MORE_FACTS, title="More facts")
    second = index.add([more, docs / "facts.pdf"])
    assert second.added == [str(more)] and second.unchanged == [str(docs / "facts.pdf")]
    assert index.num_pages() == 6

    versions = {t: index.store.version(t) for t in index.store.table_names()}
    again = index.add([docs / "facts.pdf", more])
    assert again.added == [] and len(again.unchanged) == 2 and again.pages == 0
    assert {t: index.store.version(t) for t in index.store.table_names()} == versions

    top = index.retriever().retrieve("How many spans does the Quorvane bridge have?", k=1)[0]
    assert top.source == str(more.resolve()) and top.page_index == 0
    more_id = second.doc_ids[str(more)]
    # the document has no figures and is not a financial filing (no filing or section rows)
    no_rows = (leg_table("figure"), FIGURES, FILINGS, PAGE_SECTIONS)
    empty = [t for t, n in counts(index, more_id).items() if n == 0 and t not in no_rows]
    assert not empty, f"tables without the document's rows: {empty}"

    index.delete(more_id)
    assert set(counts(index, more_id).values()) == {0}
    assert not (index.image_cache_dir / more_id).exists()
    assert not (tmp_path / "idx" / "_images").exists()  # readers write nothing in the index
    assert index.num_pages() == 4 and [d["title"] for d in index.documents()] == [
        "Facts of the world"
    ]
    hits = index.retriever().retrieve("Quorvane bridge spans", k=5)
    assert all(p.doc_id != more_id for p in hits)
    # BM25 statistics follow the delete: its in-memory index covers exactly the remaining rows
    bm25 = index.legs["bm25"]
    tbl = index.store.table(bm25.table)
    corpus = bm25._load(index.store)
    assert corpus.version == tbl.version and len(corpus.doc_ids) == tbl.count_rows()
    assert set(corpus.doc_ids) == {d["doc_id"] for d in index.documents()}
    with pytest.raises(KeyError, match="no document"):
        index.delete(more_id)
    # re-adding a deleted file indexes it again
    assert index.add([more]).added == [str(more)]


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path, minilm, minilm_path) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", text_index_config(minilm_path))
    good = make_sample_pdf(tmp_path / "in" / "good.pdf", FACTS[:2])
    assert index.add([good]).pages == 2
    before = counts(index)
    bad = [
        make_corrupt_pdf(tmp_path / "in" / "corrupt.pdf"),
        make_encrypted_pdf(tmp_path / "in" / "locked.pdf"),
        make_unsupported_file(tmp_path / "in" / "notes.txt"),
        tmp_path / "in" / "missing.pdf",
    ]
    other = make_sample_pdf(tmp_path / "in" / "other.pdf", MORE_FACTS)
    report = index.add([*bad, other])
    assert set(report.failed) == {str(p) for p in bad}
    assert "encrypted" in report.failed[str(bad[1])].lower() or "password" in (
        report.failed[str(bad[1])].lower()
    )
    assert report.added == [str(other)] and report.pages == 2
    after = counts(index)
    assert after[PAGES] == before[PAGES] + 2
    assert index.retriever().retrieve("capital of Freedonia", k=1)[0].page_index == 0


class ExplodingBM25(BM25Retriever):
    """A BM25 leg that fails on pages whose text says so (after earlier batches were written)."""

    def rows(self, pages: list[Page]):
        if any("EXPLODE" in p.text for p in pages):
            raise RuntimeError("leg failed on purpose")
        return super().rows(pages)


def test_failure_inside_a_leg_leaves_no_partial_rows(tmp_path, minilm, minilm_path) -> None:
    if "exploding-bm25" not in registry.legs:
        registry.legs.register("exploding-bm25", ExplodingBM25)
    config = text_index_config(minilm_path, LegSpec(name="exploding-bm25", alias="boom"))
    index = MultimodalIndex.create(tmp_path / "idx", config)
    index.batch_size = 1
    index.flush_pages = 1  # pages 0 and 1 reach the tables before page 2 fails
    ok = make_sample_pdf(tmp_path / "ok.pdf", FACTS[:2])
    bad = make_sample_pdf(tmp_path / "bad.pdf", ["First page.", "Second page.", "EXPLODE here"])
    report = index.add([ok, bad])
    assert report.added == [str(ok)]
    assert report.failed == {str(bad): "RuntimeError: leg failed on purpose"}
    assert str(bad) not in report.doc_ids
    from mm_retriever.ingest import document_id

    bad_id = document_id(bad)
    assert set(counts(index, bad_id).values()) == {0}
    assert index.store.count(leg_table("boom")) == 2 and index.num_pages() == 2
    assert index.retriever().retrieve("Second page", k=5)[0].source.endswith("ok.pdf")


def test_rows_without_a_marker_are_never_removed_by_opening(tmp_path, minilm, minilm_path) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", text_index_config(minilm_path))
    index.add([make_sample_pdf(tmp_path / "ok.pdf", FACTS[:1])])
    page = {"doc_id": "deadbeef00000000", "page_index": 0, "text": "half written"}
    index.store.add(PAGES, [page], None)
    index.store.add(leg_table("bm25"), [{**page, "chunk_index": -1}], index.legs["bm25"].schema())
    # uncommitted rows never reach results
    assert all(p.doc_id != page["doc_id"] for p in index.retriever().retrieve("half written"))
    assert index.store.orphan_ids() == {page["doc_id"]}
    reopened = MultimodalIndex.open(tmp_path / "idx")  # a reader: changes nothing
    assert reopened.store.orphan_ids() == {page["doc_id"]}
    assert reopened.num_pages() == 1 and reopened.store.count(PAGES) == 2
    assert any("no pending marker" in p for p in reopened.check())
    report = reopened.repair(remove_orphans=True)  # removed only on request
    assert report.removed_orphans == [page["doc_id"]] and reopened.check() == []
    assert reopened.store.count(DOCUMENTS) == 1 and reopened.store.count(PAGES) == 1


def test_unavailable_models_are_skipped_with_one_line(tmp_path, minilm, minilm_path, caplog):
    enc = minilm_encoder(minilm_path)
    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=[
            LegSpec(name="bm25"),
            LegSpec(
                name="page",
                options={"encoder": {"name": "colpali", "options": {"model": "no-org/no-model"}}},
            ),
            LegSpec(
                name="figure",
                options={
                    "image_encoder": {"name": "clip", "options": {"model": "no-org/no-clip"}},
                    "text_encoder": enc,
                },
            ),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="mm_retriever"):
        index = MultimodalIndex.create(tmp_path / "idx", config)
    lines = [r.getMessage() for r in caplog.records if r.name == "mm_retriever"]
    assert len([m for m in lines if "no-org/no-model" in m]) == 1
    assert len([m for m in lines if "no-org/no-clip" in m]) == 1
    assert list(index.legs) == ["bm25", "figure"] and list(index.skipped_legs) == ["page"]
    assert "huggingface-cli download no-org/no-model" in index.skipped_legs["page"]
    stored = IndexConfig.model_validate(index.manifest()["config"])
    assert [s.name for s in stored.legs] == ["bm25", "figure"]
    assert stored.legs[1].options["image_encoder"] is None
    assert index.manifest()["skipped_legs"].keys() == {"page"}
    reopened = MultimodalIndex.open(tmp_path / "idx")
    assert reopened.legs["figure"].image_encoder is None and reopened.skipped_legs == {}
