"""Text legs at scale: BM25 in a persistent LanceDB full-text index, the dense leg on an ANN index.

Real indexes on disk, real PDFs, the real MiniLM; thresholds set low so small tables switch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf
from shared_fixtures import minilm_encoder

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import Query
from mm_retriever.store.table_indexes import find_index, index_kind

FACTS = {
    "alpha": ["The Tidewater ferries carried 4,210 passengers in March.", "Cafés opened."],
    "beta": ["Harbour Point recorded 118 millimetres of rain in April.", "Ferries paused."],
    "gamma": ["The Quintessa orchards harvested 812 tonnes of pears.", "Rain helped growth."],
    "delta": ["Northwind shipped 3,400 wind turbine blades last year.", "Passengers waited."],
    "epsilon": ["Epsilon Mining dug 77 tunnels under the harbour.", "Pears were exported."],
}
QUERIES = [
    "ferries passengers March",
    "rain millimetres",
    "pears tonnes harvested",
    "turbine blades",
    "harbour",
    "cafe",
    "the of and",  # stop words only: no hits
]


def _pdfs(tmp_path: Path, names: list[str]) -> list[Path]:
    return [
        make_sample_pdf(
            tmp_path / f"{n}.pdf", {i + 1: f for i, f in enumerate(FACTS[n])}, n_pages=4
        )
        for n in names
    ]


def _bm25_config(**options: object) -> IndexConfig:
    return IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72), legs=[LegSpec(name="bm25", options=options)]
    )


def _bm25_hits(index: MultimodalIndex, where: str | None = None) -> list[list[tuple]]:
    leg = index.legs["bm25"]
    names = {d["doc_id"]: Path(d["source"]).stem for d in index.documents()}
    return [
        [
            (names.get(h.doc_id, h.doc_id), h.page_index, round(h.score, 4))
            for h in leg.retrieve(index.store, Query(q), k=5, where=where)
        ]
        for q in QUERIES
    ]


def _doc_id(index: MultimodalIndex, name: str) -> str:
    return next(d["doc_id"] for d in index.documents() if Path(d["source"]).stem == name)


def test_bm25_full_text_index_is_built_by_the_writer_and_used_after_reopen(
    tmp_path: Path,
) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", _bm25_config())
    assert index.add(_pdfs(tmp_path, ["alpha", "beta", "gamma"])).ok
    tbl = index.store.table("leg_bm25")
    assert find_index(tbl, "text", "fts") is not None
    before = _bm25_hits(index)

    reopened = MultimodalIndex.open(tmp_path / "idx")
    leg = reopened.legs["bm25"]
    after = _bm25_hits(reopened)
    assert after == before
    assert leg._corpus is None  # nothing rebuilt in memory: the query used the stored index
    assert after[0][0][:2] == ("alpha", 1)  # stemmed: "ferries" / "passengers"
    assert after[5][0][:2] == ("alpha", 2)  # accents folded: "cafe" finds "Cafés"
    assert after[-1] == []


def test_bm25_after_deletes_and_adds_equals_a_fresh_rebuild(tmp_path: Path) -> None:
    pdfs = _pdfs(tmp_path, list(FACTS))
    index = MultimodalIndex.create(tmp_path / "inc", _bm25_config())
    assert index.add(pdfs[:3]).ok
    _bm25_hits(index)  # a reader that queried before the changes
    index.delete(_doc_id(index, "beta"))
    assert index.add(pdfs[3:]).ok
    fresh = MultimodalIndex.create(tmp_path / "fresh", _bm25_config())
    assert fresh.add([pdfs[0], pdfs[2], *pdfs[3:]]).ok

    incremental = MultimodalIndex.open(tmp_path / "inc")
    got = _bm25_hits(incremental)
    want = _bm25_hits(fresh)
    assert [[h[:2] for h in q] for q in got] == [[h[:2] for h in q] for q in want]
    assert not any(h[0] == "beta" for q in got for h in q)
    # once compacted, the statistics (and so the scores) are exactly those of a fresh build
    incremental.optimize()
    assert _bm25_hits(MultimodalIndex.open(tmp_path / "inc")) == want
    # filters still apply (corpus-wide statistics, rows of one document returned)
    gamma = _doc_id(incremental, "gamma")
    scoped = _bm25_hits(incremental, where=f"doc_id = '{gamma}'")
    assert scoped[4] == [] and {h[0] for q in scoped for h in q} == {"gamma"}


def test_bm25_rows_added_after_the_index_are_searched_before_it_is_updated(
    tmp_path: Path,
) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", _bm25_config())
    assert index.add(_pdfs(tmp_path, ["alpha", "beta"])).ok
    tbl = index.store.table("leg_bm25")
    index.store.add("leg_bm25", [{"doc_id": "x", "page_index": 0, "chunk_index": -1,
                                   "text": "zeppelin hangar"}], None)  # fmt: skip
    cfg = find_index(tbl, "text", "fts")
    assert tbl.index_stats(cfg.name).num_unindexed_rows == 1
    hits = index.legs["bm25"].retrieve(index.store, Query("zeppelins"), k=3)
    assert [(h.doc_id, h.page_index) for h in hits] == [("x", 0)]


def test_bm25_index_without_full_text_index_falls_back_then_optimize_builds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", _bm25_config())
    assert index.add(_pdfs(tmp_path, ["alpha", "beta", "gamma"])).ok
    want = _bm25_hits(index)
    tbl = index.store.table("leg_bm25")
    tbl.drop_index(find_index(tbl, "text", "fts").name)  # as written by an older version

    old = MultimodalIndex.open(tmp_path / "idx")
    with caplog.at_level(logging.WARNING, logger="mm_retriever"):
        got = _bm25_hits(old)
    assert "no full-text index yet" in caplog.text
    assert old.legs["bm25"]._corpus is not None  # in-memory bm25s served it
    assert [[h[:2] for h in q] for q in got] == [[h[:2] for h in q] for q in want]

    old.optimize()
    assert find_index(old.store.table("leg_bm25"), "text", "fts") is not None
    assert _bm25_hits(MultimodalIndex.open(tmp_path / "idx")) == want


def test_bm25s_engine_keeps_nothing_on_disk(tmp_path: Path) -> None:
    index = MultimodalIndex.create(tmp_path / "idx", _bm25_config(engine="bm25s"))
    assert index.add(_pdfs(tmp_path, ["alpha", "beta"])).ok
    assert find_index(index.store.table("leg_bm25"), "text", "fts") is None
    assert _bm25_hits(index)[0][0][:2] == ("alpha", 1)
    with pytest.raises(ValueError, match="engine"):
        MultimodalIndex.create(tmp_path / "bad", _bm25_config(engine="lucene"))


# ------------------------------------------------------------------ dense text leg: ANN


def _text_config(minilm_path: str, **options: object) -> IndexConfig:
    return IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72, chunk_size=120, chunk_overlap=0),
        legs=[LegSpec(name="text", options={"encoder": minilm_encoder(minilm_path), **options})],
        device="cpu",
    )


def _dense_hits(index: MultimodalIndex, query: str, where: str | None = None) -> list[tuple]:
    hits = index.legs["text"].retrieve(index.store, Query(query), k=5, where=where)
    return [(h.doc_id, h.page_index) for h in hits]


def test_dense_leg_switches_to_ann_with_filters_and_same_top_hits(
    tmp_path: Path, minilm_path: str
) -> None:
    config = _text_config(minilm_path, ann_min_rows=40, nprobes=64, refine_factor=20)
    index = MultimodalIndex.create(tmp_path / "idx", config)
    pdfs = _pdfs(tmp_path, list(FACTS))
    assert index.add(pdfs[:1]).ok
    tbl = index.store.table("leg_text")
    assert tbl.count_rows() < 40 and find_index(tbl, "vector", "vector") is None
    assert index.add(pdfs[1:]).ok
    assert tbl.count_rows() >= 40
    cfg = find_index(tbl, "vector", "vector")
    assert cfg is not None and index_kind(cfg) == "vector"

    ann = MultimodalIndex.open(tmp_path / "idx")
    ann_prefiltered = MultimodalIndex.open(tmp_path / "idx")
    ann_prefiltered.legs["text"].exact_filtered_rows = 0  # filters go through the ANN search
    flat = MultimodalIndex.open(tmp_path / "idx")
    flat.legs["text"].has_ann_index = lambda store: False  # the same table, scanned exactly
    assert ann.legs["text"].has_ann_index(ann.store)
    gamma = _doc_id(ann, "gamma")
    where = f"doc_id = '{gamma}'"
    for query in QUERIES[:5]:
        got = _dense_hits(ann, query)
        assert got and got[:3] == _dense_hits(flat, query)[:3]
        want = _dense_hits(flat, query, where=where)
        assert {d for d, _ in want} == {gamma}
        assert _dense_hits(ann, query, where=where) == want  # exact over the filtered rows
        assert _dense_hits(ann_prefiltered, query, where=where)[:3] == want[:3]
    assert _dense_hits(ann, "orchards pears tonnes")[0] == (gamma, 1)


def test_dense_leg_ann_sees_new_rows_and_drops_deleted_ones(
    tmp_path: Path, minilm_path: str
) -> None:
    config = _text_config(minilm_path, ann_min_rows=40, nprobes=64, refine_factor=20)
    index = MultimodalIndex.create(tmp_path / "idx", config)
    pdfs = _pdfs(tmp_path, list(FACTS))
    assert index.add(pdfs[:4]).ok
    tbl = index.store.table("leg_text")
    cfg = find_index(tbl, "vector", "vector")
    assert cfg is not None
    assert index.add(pdfs[4:]).ok  # one small add: stays unindexed, scanned next to the index
    assert tbl.index_stats(cfg.name).num_unindexed_rows > 0
    epsilon = _doc_id(index, "epsilon")
    assert _dense_hits(index, "mining tunnels under the harbour")[0] == (epsilon, 1)
    index.delete(epsilon)
    assert all(d != epsilon for d, _ in _dense_hits(index, "mining tunnels under the harbour"))


def test_text_leg_options_are_checked_and_recorded(tmp_path: Path, minilm_path: str) -> None:
    with pytest.raises(ValueError, match="ann_index"):
        MultimodalIndex.create(tmp_path / "bad", _text_config(minilm_path, ann_index="LSH"))
    index = MultimodalIndex.create(tmp_path / "idx", _text_config(minilm_path, ann_min_rows=7))
    reopened = MultimodalIndex.open(tmp_path / "idx")
    leg = reopened.legs["text"]
    assert (leg.ann_min_rows, leg.ann_index) == (7, "IVF_SQ")
    assert index.legs["text"].config()["nprobes"] == leg.nprobes


def test_doc_id_lookup_index_keeps_hydration_and_filters_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above LOOKUP_MIN_ROWS rows every per-document table gets a B-tree on doc_id (hydration
    and within-doc filters read a few rows); answers stay those of the plain scan, and rows
    added or deleted after it was built are seen."""
    from mm_retriever.store import table_indexes

    monkeypatch.setattr(table_indexes, "LOOKUP_MIN_ROWS", 8)
    index = MultimodalIndex.create(tmp_path / "idx", _bm25_config())
    pdfs = _pdfs(tmp_path, list(FACTS))
    assert index.add(pdfs[:1]).ok  # 4 pages: below the bound, no index
    assert find_index(index.store.table("pages"), "doc_id", "scalar") is None
    assert index.add(pdfs[1:4]).ok
    for name in ("pages", "leg_bm25", "documents"):
        tbl = index.store.table(name)
        if tbl.count_rows() >= 8:
            cfg = find_index(tbl, "doc_id", "scalar")
            assert cfg is not None and "btree" in str(cfg.index_type).lower(), name
    assert find_index(index.store.table("documents"), "doc_id", "scalar") is None  # 4 rows
    assert index.add(pdfs[4:]).ok  # new rows: folded in or scanned next to the index
    epsilon = _doc_id(index, "epsilon")
    retriever = index.retriever(include_images=False, write_images=False)
    pages = retriever.retrieve("Epsilon Mining tunnels", k=3)
    assert (pages[0].doc_id, pages[0].page_index) == (epsilon, 1)
    assert "77 tunnels" in pages[0].text
    where = f"doc_id = '{epsilon}'"
    assert index.store.count("pages", where) == 4
    assert [h[0] for h in _bm25_hits(index, where)[4]] == ["epsilon"]  # "harbour", filtered
    index.delete(epsilon)
    assert index.store.count("pages", where) == 0
    assert all(p.doc_id != epsilon for p in retriever.retrieve("Epsilon Mining tunnels", k=3))
