"""Compaction and version cleanup on a real index: space freed, every committed document kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf
from typer.testing import CliRunner

from mm_retriever.cli import app
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex

FACTS = {
    "alpha": "The Tidewater ferries carried 4,210 passengers in March.",
    "beta": "Harbour Point recorded 118 millimetres of rain in April.",
    "gamma": "The Quintessa orchards harvested 812 tonnes of pears.",
    "delta": "Northwind shipped 3,400 wind turbine blades last year.",
}


def _bm25_index(tmp_path: Path) -> MultimodalIndex:
    """An index with several versions behind it: four adds one by one and a delete."""
    config = IndexConfig(ingest=IngestConfig(ocr="never", dpi=72), legs=[LegSpec(name="bm25")])
    index = MultimodalIndex.create(tmp_path / "index", config)
    for name, fact in FACTS.items():
        pdf = make_sample_pdf(tmp_path / f"{name}.pdf", {1: fact}, n_pages=3)
        assert index.add([pdf]).ok
    (gone,) = [d["doc_id"] for d in index.documents() if d["source"].endswith("delta.pdf")]
    index.delete(gone)
    return index


def _answers(index: MultimodalIndex) -> list[tuple[str, int]]:
    retriever = index.retriever()
    return [
        (hit.source.rsplit("/", 1)[-1], hit.page_index)
        for fact in FACTS.values()
        for hit in retriever.retrieve(fact, k=2)
    ]


def test_optimize_frees_space_and_keeps_every_document(tmp_path: Path) -> None:
    index = _bm25_index(tmp_path)
    documents, pages, answers = index.documents(), index.num_pages(), _answers(index)

    report = index.optimize()

    assert report.bytes_after < report.bytes_before
    assert report.bytes_after == sum(index.bytes_per_table().values())
    assert set(report.tables) >= {"documents", "pages", "leg_bm25"}
    reopened = MultimodalIndex.open(tmp_path / "index")
    assert reopened.documents() == documents and reopened.num_pages() == pages == 9
    assert _answers(reopened) == answers
    assert ("alpha.pdf", 1) in answers and not any(a[0] == "delta.pdf" for a in answers)
    assert reopened.check() == []
    # a later add works on the compacted tables
    pdf = make_sample_pdf(tmp_path / "epsilon.pdf", {0: "Epsilon Mining dug 77 tunnels."})
    assert reopened.add([pdf]).ok and reopened.num_pages() == 10


def test_recent_versions_are_kept_when_asked(tmp_path: Path) -> None:
    index = _bm25_index(tmp_path)
    kept = index.optimize(keep_versions_for=timedelta(hours=1))
    assert kept.bytes_after >= kept.bytes_before  # compaction writes; nothing recent deleted
    pruned = index.optimize(keep_versions_for=0)
    assert pruned.bytes_after < kept.bytes_after
    with pytest.raises(ValueError, match="negative"):
        index.optimize(keep_versions_for=-1)
    with pytest.raises(TypeError, match="timedelta"):
        index.optimize(keep_versions_for="1h")  # type: ignore[arg-type]


def test_compact_command(tmp_path: Path) -> None:
    index = _bm25_index(tmp_path)
    before = sum(index.bytes_per_table().values())
    result = CliRunner().invoke(app, ["compact", "--index", str(tmp_path / "index")])
    assert result.exit_code == 0, result.output
    assert "compacted" in result.output and "bytes on disk" in result.output
    assert sum(index.bytes_per_table().values()) < before
    missing = CliRunner().invoke(app, ["compact", "--index", str(tmp_path / "nothing")])
    assert missing.exit_code != 0 and "no index at" in missing.output


def test_large_adds_clean_old_versions(tmp_path: Path) -> None:
    sizes = {}
    for auto in (False, True):
        config = IndexConfig(ingest=IngestConfig(ocr="never", dpi=72), legs=[LegSpec(name="bm25")])
        index = MultimodalIndex.create(tmp_path / f"index-{auto}", config)
        index.auto_optimize_pages = 3 if auto else 10**9
        index.keep_versions_for = timedelta(0)
        for name, fact in FACTS.items():
            pdf = make_sample_pdf(tmp_path / f"{name}.pdf", {1: fact}, n_pages=3)
            assert index.add([pdf]).ok  # 3 pages each: a "large" add when auto
        assert index.num_pages() == 12 and index.check() == []
        sizes[auto] = sum(index.bytes_per_table().values())
    assert sizes[True] < sizes[False]
