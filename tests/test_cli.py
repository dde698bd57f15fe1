"""The command line on real files: index a folder with a bad file, search, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pdfgen import make_corrupt_pdf, make_sample_pdf
from typer.testing import CliRunner

from mm_retriever.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, minilm_path: str) -> Path:
    folder = tmp_path_factory.mktemp("pdfs")
    make_sample_pdf(
        folder / "fleet.pdf",
        {0: "The company operates ferries.", 2: "The fleet has exactly 47 electric ferries."},
        n_pages=4,
    )
    make_corrupt_pdf(folder / "broken.pdf")
    index = tmp_path_factory.mktemp("idx") / "index"
    result = runner.invoke(
        app,
        [
            "index",
            str(folder),
            "--index",
            str(index),
            "--leg",
            "text",
            "--leg",
            "bm25",
            "--text-model",
            minilm_path,
            "--ocr",
            "never",
        ],
    )
    # one bad file: the rest is indexed, the summary says so, and the exit code is non-zero
    assert result.exit_code == 1, result.output
    assert "indexed 1 document(s), 4 page(s)" in result.output
    assert "1 failed" in result.output
    assert "broken.pdf" in result.output
    return index


def test_search_json_finds_the_answer_page(indexed: Path) -> None:
    result = runner.invoke(
        app,
        [
            "search",
            "How many electric ferries are in the fleet?",
            "--index",
            str(indexed),
            "-k",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    pages = json.loads(result.stdout)
    assert pages[0]["page_index"] == 2 and pages[0]["page_number"] == 3
    assert set(pages[0]["leg_ranks"]) <= {"text", "bm25"} and pages[0]["leg_ranks"]

    def leg_scores(*extra: str) -> list:
        q = "How many electric ferries are in the fleet? Write the answer in integer format."
        out = runner.invoke(app, ["search", q, "--index", str(indexed), "--json", *extra])
        assert out.exit_code == 0, out.output
        return [p["leg_scores"] for p in json.loads(out.stdout)]

    assert leg_scores()[0] == pages[0]["leg_scores"]  # the instruction is dropped
    assert leg_scores("--raw-query")[0] != pages[0]["leg_scores"]


def test_search_table_shows_ranks_and_pages(indexed: Path, monkeypatch) -> None:
    from mm_retriever import cli

    monkeypatch.setattr(cli.console, "width", 80)  # a narrow terminal
    q = "How many electric ferries are in the fleet?"
    result = runner.invoke(app, ["search", q, "--index", str(indexed), "-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    ranked = [c for c in cells if c[0]]
    assert [c[0] for c in ranked] == ["1", "2"] and ranked[0][1] == "3"  # rank, page number
    table = [line for line in result.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table)


def test_info_lists_the_documents(indexed: Path) -> None:
    info = runner.invoke(app, ["info", "--index", str(indexed)])
    assert info.exit_code == 0, info.output
    assert "fleet.pdf" in info.output


def test_empty_query_is_a_clear_error(indexed: Path) -> None:
    result = runner.invoke(app, ["search", "   ", "--index", str(indexed)])
    assert result.exit_code != 0
    assert "query is empty" in result.output


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "anything", "--index", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert "no index at" in result.output
