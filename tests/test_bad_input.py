"""Bad input gets a clear error or a warning and loses nothing: retrieve arguments, damaged and
oddly named files, CLI misuse (unknown ids, a damaged manifest, an existing index given to
``demo``, ``index`` options an existing index would ignore)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf
from reliability_harness import bm25_config
from typer.testing import CliRunner

from mm_retriever.cli import app
from mm_retriever.errors import InvalidQueryError
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import Query

runner = CliRunner()
FACTS = ["The Saltby ferry carried 812 passengers on its first day.", "Second page text."]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[MultimodalIndex, Path]:
    root = tmp_path_factory.mktemp("bad_input")
    pdf = make_sample_pdf(root / "facts.pdf", FACTS)
    index = MultimodalIndex.create(root / "idx", bm25_config())
    assert index.add([pdf]).added
    return index, pdf


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": "ferry", "k": 1.5}, "k must be a whole number from 1 to 100, got 1.5"),
        ({"query": "ferry", "k": -1}, "k must be a whole number from 1 to 100, got -1"),
        ({"query": "ferry", "k": 0}, "k must be a whole number from 1 to 100, got 0"),
        ({"query": "ferry", "k": 10**9}, "k must be a whole number from 1 to 100"),
        ({"query": "ferry", "k": True}, "k must be a whole number from 1 to 100"),
        ({"query": "ferry " * 1000}, "the query is 5999 characters long; the limit is 4000"),
        ({"query": "ferry", "filters": {"doc_id": ["a"] * 1001}}, "lists 1001 values; the"),
        ({"query": "ferry", "filters": {"doc_id": {"in": ["a"] * 1001}}}, "the limit is 1000"),
        ({"query": "ferry", "min_score": 1.5}, "min_score must be a number from 0 to 1"),
        ({"query": "ferry", "min_score": "high"}, "min_score must be a number from 0 to 1"),
        ({"query": 123}, "a query is a string, a PIL image or a Query, got int"),
        ({"query": "ferry \ud800"}, "not valid Unicode"),
        ({"query": "ferry", "filters": "x"}, "filters must be a mapping"),
        ({"query": "ferry", "filters": {"page_index": 10**30}}, "out of range"),
        ({"query": "ferry", "filters": {"page_index": {"lte": -(10**30)}}}, "out of range"),
        ({"query": "ferry", "filters": {"source": "a\udce9.pdf"}}, "not valid Unicode"),
    ],
)
def test_bad_retrieve_arguments_are_clear_errors(built, kwargs, message) -> None:
    index, _ = built
    with pytest.raises(ValueError, match=message) as info:
        index.retriever().retrieve(**kwargs)
    assert isinstance(info.value, InvalidQueryError) or "filter" in str(info.value)


def test_good_edge_arguments_still_work(built) -> None:
    index, _ = built
    retriever = index.retriever()
    assert retriever.retrieve("ferry", k=100)
    assert retriever.retrieve("ferry " * 666, k=1)  # 3,995 characters: within the limit
    doc_id = index.documents()[0]["doc_id"]
    assert retriever.retrieve("Saltby ferry", k=1, filters={"doc_id": ["x"] * 999 + [doc_id]})
    assert retriever.retrieve("Saltby ferry", k=1, filters={"page_index": 2**31 - 1}) == []
    assert retriever.retrieve("Saltby ferry", k=1, filters={"page_index": {"lte": 0}})
    import numpy as np

    assert retriever.retrieve("Saltby ferry", k=np.int64(1))
    with pytest.raises(ValueError, match="the query is empty"):
        retriever.retrieve("   ")
    with pytest.raises(InvalidQueryError, match="PIL image"):
        retriever.retrieve(Query(text="ferry", image="chart.png"))


def test_truncated_pdf_is_indexed_with_a_warning(built, tmp_path) -> None:
    _, pdf = built
    data = pdf.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 3])
    index = MultimodalIndex.create(tmp_path / "idx", bm25_config())
    report = index.add([cut])
    assert report.added == [str(cut)]
    assert "damaged (truncated or corrupt) and was repaired" in report.warnings[str(cut)]
    result = runner.invoke(
        app, ["index", str(cut), "--index", str(tmp_path / "idx2"), "--leg", "bm25"]
    )
    assert result.exit_code == 0 and "warning:" in result.output


def test_file_name_that_is_not_utf8_is_indexed(built, tmp_path) -> None:
    _, pdf = built
    folder = tmp_path / "docs"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9 report.pdf")
    shutil.copyfile(pdf, odd)
    index = MultimodalIndex.create(tmp_path / "idx", bm25_config())
    report = index.add([folder])
    assert len(report.added) == 1 and not report.failed
    (doc,) = index.documents()
    assert doc["source"].endswith("caf\\xe9 report.pdf")
    page = index.retriever().retrieve("Saltby ferry passengers", k=1)[0]
    assert page.source == doc["source"] and page.title


def test_delete_of_an_unknown_id_is_a_clear_error(built) -> None:
    index, _ = built
    result = runner.invoke(app, ["delete", "0000000000000000", "--index", index.uri])
    assert result.exit_code == 1
    assert "no document with id 0000000000000000" in result.output
    assert "Traceback" not in result.output and len(index) == 1
    with pytest.raises(KeyError, match="no document with id"):
        index.delete("0000000000000000")


def test_failed_lines_are_not_wrapped(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    bad = tmp_path / ("a-rather-long-folder-name-" * 3) / "not-a-pdf-with-a-long-name.pdf"
    bad.parent.mkdir(parents=True)
    bad.write_text("this is not a PDF at all")
    result = runner.invoke(
        app, ["index", str(bad), "--index", str(tmp_path / "idx"), "--leg", "bm25"]
    )
    assert result.exit_code == 1
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("failed:")]
    assert str(bad) in line and "not a readable PDF" in line


def test_demo_never_replaces_an_existing_index(built) -> None:
    index, _ = built
    result = runner.invoke(app, ["demo", "--index", index.uri])
    assert result.exit_code == 1 and "never replaces an existing one" in result.output
    assert len(MultimodalIndex.open(index.uri)) == 1


def test_index_options_an_existing_index_would_ignore_are_an_error(built, tmp_path) -> None:
    index, pdf = built
    before = index.store.version("documents")
    for option in (
        ["--dpi", "150"],
        ["--ocr", "always"],
        ["--ocr-runtime", "onnxruntime"],
        ["--leg", "text"],
        ["--text-model", "BAAI/bge-small-en-v1.5"],
    ):
        result = runner.invoke(app, ["index", str(pdf), "--index", index.uri, *option])
        assert result.exit_code == 1, (option, result.output)
        assert "would be ignored" in result.output and option[0] in result.output
    bad = runner.invoke(app, ["index", str(pdf), "--index", index.uri, "--ocr-runtime", "trt"])
    assert bad.exit_code == 1 and "--ocr-runtime must be one of auto, openvino" in bad.output
    ok = runner.invoke(app, ["index", str(pdf), "--index", index.uri, "--dpi", "72"])
    assert ok.exit_code == 0, ok.output  # the same value as stored: fine
    assert index.store.version("documents") == before


def test_damaged_manifest_is_not_reported_as_no_index(built, tmp_path) -> None:
    import lancedb

    index, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(index.uri, copy)
    lancedb.connect(copy).open_table("manifest").update(
        where="key = 'schema_version'", values={"value": "not json"}
    )
    result = runner.invoke(app, ["info", "--index", str(copy)])
    assert result.exit_code == 1
    assert "damaged" in result.output and "no index" not in result.output
    doctor = runner.invoke(app, ["doctor", "--index", str(copy)])
    assert doctor.exit_code == 1 and "manifest" in doctor.output


def test_doctor_and_repair(built, tmp_path) -> None:
    index, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(index.uri, copy)
    assert "healthy" in runner.invoke(app, ["doctor", "--index", str(copy)]).output
    idx = MultimodalIndex.open(copy)
    stray = {"doc_id": "5555555555555555", "page_index": 0, "chunk_index": 0, "text": "stray"}
    idx.store.add("leg_bm25", [stray], None)
    idx.store.mark_pending("6666666666666666", "add")
    idx.store.add("pages", [{"doc_id": "6666666666666666", "page_index": 0}], None)
    doctor = runner.invoke(app, ["doctor", "--index", str(copy)])
    assert doctor.exit_code == 1
    assert "interrupted add of document 6666666666666666" in doctor.output
    refused = runner.invoke(app, ["repair", "--index", str(copy)], input="n\n")
    assert refused.exit_code == 1 and idx.store.count("pages") == 3  # nothing without consent
    done = runner.invoke(app, ["repair", "--index", str(copy), "--yes"])
    assert done.exit_code == 1  # the stray rows need --remove-orphans
    assert "1 interrupted write(s) finished or undone" in done.output
    assert "5555555555555555" in done.output and idx.store.count("pages") == 2
    done = runner.invoke(app, ["repair", "--index", str(copy), "--yes", "--remove-orphans"])
    assert done.exit_code == 0 and "1 stray document id(s) removed" in done.output
    assert MultimodalIndex.open(copy).check() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"ingest": {"dpi": 72}', "not valid JSON: Expecting ',' delimiter at line 1"),
        ('{"ingest": {"dpi": "high"}}', "ingest.dpi: Input should be a valid integer"),
        ('{"legs": [{"options": {}}]}', "legs.0.name: Field required"),
        ("[1, 2]", "holds a JSON list; an IndexConfig is a JSON object"),
        (None, "no such file"),
    ],
)
def test_index_config_file_errors_are_one_line(built, tmp_path, content, message) -> None:
    _, pdf = built
    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    target = tmp_path / "idx"
    result = runner.invoke(
        app, ["index", str(pdf), "--index", str(target), "--config", str(config)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [f"error: config file {config}: {lines[0].split(': ', 2)[2]}"], lines
    assert message in result.output and "Traceback" not in result.output
    assert not target.exists()  # nothing was created


def test_verbose_shows_the_traceback_of_an_error(built, tmp_path) -> None:
    _, pdf = built
    missing = tmp_path / "missing.json"
    args = ["index", str(pdf), "--index", str(tmp_path / "idx"), "--config", str(missing)]
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 2 and "Traceback" not in quiet.output
    loud = runner.invoke(app, ["-v", *args])
    assert loud.exit_code == 2 and "Traceback" in loud.output and "ConfigError" in loud.output
    assert f"error: config file {missing}: no such file" in loud.output


def _truncate_a_data_file(index: Path, table: str) -> None:
    data = sorted((index / f"{table}.lance" / "data").iterdir())[0]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


@pytest.mark.parametrize("table", ["pages", "documents", "leg_bm25"])
def test_truncated_data_file_names_the_table(built, tmp_path, table) -> None:
    index, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(index.uri, copy)
    _truncate_a_data_file(copy, table)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and ".lock" not in p.name}
    for cmd in (["search", "Saltby ferry"], ["info"], ["doctor"]):
        result = runner.invoke(app, [*cmd, "--index", str(copy)])
        assert result.exit_code == 1, (cmd, result.output)
        assert "Traceback" not in result.output, result.output
        assert f"table '{table}'" in result.output and (
            "damaged" in result.output or "unreadable" in result.output
        ), result.output
    from mm_retriever.errors import IndexCorruptError

    with pytest.raises(IndexCorruptError, match=f"table '{table}' cannot be read"):
        MultimodalIndex.open(copy).retriever().retrieve("Saltby ferry", k=1)
    after = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file() and ".lock" not in p.name}
    assert after == before  # nothing was changed


def test_logs_only_with_verbose(built, tmp_path) -> None:
    _, pdf = built
    args = ["index", str(pdf), "--leg", "bm25", "--ocr", "never", "--workers", "0"]
    quiet = runner.invoke(app, [*args, "--index", str(tmp_path / "a")])
    assert quiet.exit_code == 0, quiet.output
    assert "INFO" not in quiet.output and "indexed 1 document(s)" in quiet.output
    loud = runner.invoke(app, ["-v", *args, "--index", str(tmp_path / "b")])
    assert loud.exit_code == 0, loud.output
    assert "INFO" in loud.output and "building a full-text index on leg_bm25.text" in loud.output


def test_bad_search_input_and_an_index_that_is_a_file_exit_2(built, tmp_path) -> None:
    index, pdf = built
    for args, message in (
        (["-k", "-3"], "k must be a whole number from 1 to 100, got -3"),
        (["--leg", "nope"], "unknown leg(s) ['nope']"),
    ):
        result = runner.invoke(app, ["search", "ferry", "--index", index.uri, *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    result = runner.invoke(app, ["index", str(pdf), "--index", str(a_file), "--leg", "bm25"])
    assert result.exit_code == 2 and f"--index {a_file} is a file" in result.output
    assert a_file.read_text() == "mine"
