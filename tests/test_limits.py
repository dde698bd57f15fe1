"""One set of limits (``mm_retriever.limits``), the same message for the same mistake on every
surface: the Python API, the CLI, HTTP and MCP."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pdfgen import make_sample_pdf
from reliability_harness import bm25_config
from typer.testing import CliRunner

from mm_retriever import limits
from mm_retriever.cli import app
from mm_retriever.errors import InvalidQueryError
from mm_retriever.index import MultimodalIndex

QUESTION = "Who kept the Pellham lighthouse?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    pdfs = [
        make_sample_pdf(root / "a.pdf", ["The Pellham lighthouse keeper was Ada Moss.", "Tides."]),
        make_sample_pdf(root / "b.pdf", ["Rainfall in Saltby was 812 mm.", "Harbour notes."]),
    ]
    index = MultimodalIndex.create(root / "idx", bm25_config())
    assert not index.add(pdfs).failed
    return root / "idx"


@pytest.fixture(scope="module")
def client(index_dir: Path):
    from mm_retriever.serve import ServeSettings, create_app

    with TestClient(create_app(ServeSettings(index=str(index_dir)))) as c:
        yield c


def _flat(text: str) -> str:
    return " ".join(text.split())


LONG = "lighthouse " * 400  # 4,399 characters once stripped
MISTAKES = [
    ({"k": 0}, "k must be a whole number from 1 to 100, got 0"),
    ({"k": -1}, "k must be a whole number from 1 to 100, got -1"),
    ({"k": 10**9}, "k must be a whole number from 1 to 100, got 1000000000"),
    ({"query": LONG}, "the query is 4399 characters long; the limit is 4000"),
    ({"min_score": 1.5}, "min_score must be a number from 0 to 1, got 1.5"),
]


@pytest.mark.parametrize(("mistake", "message"), MISTAKES)
def test_the_same_mistake_gets_the_same_message_everywhere(
    index_dir: Path, client: TestClient, mistake: dict, message: str
) -> None:
    import anyio

    from mm_retriever.mcp_server import build_server

    args = {"query": QUESTION, "k": 3, "min_score": None, **mistake}
    index = MultimodalIndex.open(index_dir)

    with pytest.raises(InvalidQueryError) as python:
        index.retriever().retrieve(args["query"], k=args["k"], min_score=args["min_score"])
    assert str(python.value) == message

    cli_args = ["search", args["query"], "--index", str(index_dir), "-k", str(args["k"])]
    if args["min_score"] is not None:
        cli_args += ["--min-score", str(args["min_score"])]
    cli = CliRunner().invoke(app, cli_args)
    assert cli.exit_code == 2 and _flat(f"error: {message}") in _flat(cli.output)

    http = client.post("/search", json={k: v for k, v in args.items() if v is not None})
    assert http.status_code == 422 and http.json()["detail"] == message

    from mcp.server.mcpserver.exceptions import ToolError

    server = build_server(index)
    mcp_args = {k: v for k, v in args.items() if v is not None}
    with pytest.raises(ToolError) as mcp:
        anyio.run(server.call_tool, "search", mcp_args)
    assert str(mcp.value).endswith(f": {message}")  # the SDK names the tool first


def test_mcp_refuses_bad_and_unknown_document_ids_and_pages(index_dir: Path) -> None:
    import anyio
    from mcp.server.mcpserver.exceptions import ToolError

    from mm_retriever.mcp_server import build_server

    index = MultimodalIndex.open(index_dir)
    doc_id = index.documents()[0]["doc_id"]
    server = build_server(index)

    def error(tool: str, args: dict) -> str:
        with pytest.raises(ToolError) as info:
            anyio.run(server.call_tool, tool, args)
        return str(info.value)

    assert "is not a document id" in error("search", {"query": QUESTION, "doc_ids": ["x' OR 1"]})
    unknown = error("search", {"query": QUESTION, "doc_ids": ["abc123"]})
    assert "unknown doc_id 'abc123'" in unknown
    huge = error("get_page", {"doc_id": doc_id, "page_number": 10**20})
    assert "page_number 100000000000000000000 is out of range" in huge
    assert "numbered 1-2" in error("get_page", {"doc_id": doc_id, "page_number": 0})
    assert "unknown doc_id '../x'" in error("get_page", {"doc_id": "../x", "page_number": 1})
    found = anyio.run(server.call_tool, "search", {"query": QUESTION, "doc_ids": [doc_id], "k": 1})
    assert "Pellham" in found.content[0].text or "Rainfall" in found.content[0].text


def test_filter_lists_and_images_are_bounded(index_dir: Path) -> None:
    from PIL import Image

    from mm_retriever.protocols import Query

    retriever = MultimodalIndex.open(index_dir).retriever()
    too_many = ["a"] * (limits.MAX_FILTER_VALUES + 1)
    with pytest.raises(InvalidQueryError, match="filter 'doc_id' lists 1001 values"):
        retriever.retrieve(QUESTION, filters={"doc_id": too_many})
    with pytest.raises(InvalidQueryError, match="the limit is 40 megapixels"):
        limits.check_image_size(8000, 6000)
    with pytest.raises(InvalidQueryError, match="the limit is 20 MiB"):
        limits.check_image_bytes(limits.MAX_IMAGE_BYTES + 1)
    image = Image.new("RGB", (40, 30), "white")
    with pytest.raises(InvalidQueryError, match=r"none of the legs searched \(bm25\) reads images"):
        retriever.retrieve(image)
    assert retriever.retrieve(Query(text=QUESTION, image=image), k=1)  # text: bm25 answers
