"""The MCP server over stdio, driven by the official SDK's client: `mm-retriever mcp --index`."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import pytest
from PIL import Image
from serve_helpers import CHART_QUESTION, build_text_index


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm_path: str) -> Path:
    return build_text_index(tmp_path_factory.mktemp("mcp"), minilm_path)


async def _session_call(index_dir: Path, calls: list[tuple[str, dict]]) -> tuple[list, list]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mm_retriever.cli", "mcp", "--index", str(index_dir)],
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    with open(index_dir.parent / "mcp-stderr.log", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = (await session.list_tools()).tools
            results = [await session.call_tool(name, args) for name, args in calls]
    return tools, results


async def test_search_tool_returns_cited_text_and_page_images(index_dir: Path) -> None:
    from mm_retriever.index import MultimodalIndex

    solar = next(
        d["doc_id"]
        for d in MultimodalIndex.open(index_dir).documents()
        if d["source"].endswith("solar_market_outlook_2025.pdf")
    )
    tools, (docs, hits, scoped, empty, page3, no_page) = await _session_call(
        index_dir,
        [
            ("list_documents", {}),
            ("search", {"query": CHART_QUESTION, "k": 2}),
            ("search", {"query": CHART_QUESTION, "k": 2, "doc_ids": ["__later__"]}),
            ("search", {"query": "   "}),
            ("get_page", {"doc_id": solar, "page_number": 3}),
            ("get_page", {"doc_id": solar, "page_number": 9}),
        ],
    )
    names = {t.name for t in tools}
    assert names == {"search", "get_page", "get_figure", "list_documents"}
    search_tool = next(t for t in tools if t.name == "search")
    assert "query" in search_tool.input_schema["properties"]

    listed = json.loads(docs.content[0].text)
    assert {d["file"] for d in listed} == {
        "solar_market_outlook_2025.pdf",
        "harbour_point_water_survey.pdf",
    }

    assert not hits.is_error
    kinds = [c.type for c in hits.content]
    # per page: its text block, its page image, then its matched figure crops
    assert kinds[:3] == ["text", "image", "image"] and kinds.count("text") == 2
    first = hits.content[0].text
    assert first.startswith("[1] solar_market_outlook_2025.pdf, p. 2")
    assert "Asia-Pacific" in first and "matched figure 1: Figure 1: Solar capacity" in first
    page_img = hits.content[1]
    assert page_img.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(page_img.data))).size[0] > 100
    assert hits.content[2].mime_type == "image/jpeg"  # figure crops are sent as JPEG too

    # an unknown doc id and an empty query are errors the agent can read
    assert scoped.is_error and "unknown doc_id '__later__'" in scoped.content[0].text
    assert empty.is_error and "query is empty" in empty.content[0].text

    # a page by number: citation and text, then the image
    assert [c.type for c in page3.content] == ["text", "image"]
    assert page3.content[0].text.startswith("solar_market_outlook_2025.pdf, p. 3")
    assert no_page.is_error
    assert no_page.content[0].text.endswith(
        f"page_number 9 is out of range: solar_market_outlook_2025.pdf (doc_id {solar}) "
        f"has {_n_pages(index_dir, solar)} page(s), numbered 1-{_n_pages(index_dir, solar)}"
    )


def _n_pages(index_dir: Path, doc_id: str) -> int:
    from mm_retriever.index import MultimodalIndex

    docs = MultimodalIndex.open(index_dir).documents()
    return next(int(d["n_pages"]) for d in docs if d["doc_id"] == doc_id)


# ---------------------------------------------------------------- in process: the byte budget


@pytest.fixture(scope="module")
def opened(index_dir: Path):
    from mm_retriever.index import MultimodalIndex

    return MultimodalIndex.open(index_dir)


async def _call(server, calls: list[tuple[str, dict]]) -> list:
    from mcp import Client

    async with Client(server) as client:
        return [await client.call_tool(name, args) for name, args in calls]


def _wire_bytes(result) -> int:
    """The size of the tool result as JSON (what the host receives, base64 included)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def _images(result) -> list[Image.Image]:
    return [
        Image.open(io.BytesIO(base64.b64decode(c.data)))
        for c in result.content
        if c.type == "image"
    ]


async def test_search_results_stay_within_the_byte_budget(opened) -> None:
    from mm_retriever.mcp_server import ResultBudget, build_server

    (full,) = await _call(build_server(opened), [("search", {"query": CHART_QUESTION, "k": 3})])
    assert not full.is_error
    images = _images(full)
    assert len(images) >= 4  # three page images and the matched chart crop
    assert {c.mime_type for c in full.content if c.type == "image"} == {"image/jpeg"}
    assert all(max(im.size) <= 1568 and im.size[0] * im.size[1] <= 1_150_000 for im in images)
    assert _wire_bytes(full) <= ResultBudget().max_bytes
    assert not any("omitted" in c.text for c in full.content if c.type == "text")  # all fitted

    # half of what the full result needs: the result fits, and says what it left out
    budget = ResultBudget(max_bytes=_wire_bytes(full) // 2)
    (tight,) = await _call(
        build_server(opened, budget=budget), [("search", {"query": CHART_QUESTION, "k": 3})]
    )
    assert _wire_bytes(tight) <= budget.max_bytes
    kept = len(_images(tight))
    assert 0 < kept < len(images)
    note = tight.content[-1].text
    assert note.startswith(f"{len(images) - kept} image(s) omitted (budget ")
    assert "call get_page(doc_id, page_number)".lower() in note.lower()
    assert [c.text.split("\n")[0] for c in tight.content if c.type == "text"][:3] == [
        c.text.split("\n")[0] for c in full.content if c.type == "text"
    ][:3]  # every hit's text is still there, in rank order

    # smaller images shrink the result; the long side follows the option
    small = ResultBudget(max_image_side=300)
    (shrunk,) = await _call(
        build_server(opened, budget=small), [("search", {"query": CHART_QUESTION, "k": 3})]
    )
    assert all(max(im.size) <= 300 for im in _images(shrunk))
    assert _wire_bytes(shrunk) < _wire_bytes(full)


async def test_get_page_and_get_figure_say_what_is_wrong(opened) -> None:
    from mm_retriever.mcp_server import build_server

    solar = next(
        d for d in opened.documents() if d["source"].endswith("solar_market_outlook_2025.pdf")
    )
    doc_id, n = solar["doc_id"], int(solar["n_pages"])
    huge, zero, unknown, injected, figure, no_figure = await _call(
        build_server(opened),
        [
            ("get_page", {"doc_id": doc_id, "page_number": 10**20}),
            ("get_page", {"doc_id": doc_id, "page_number": 0}),
            ("get_page", {"doc_id": "0123456789abcdef", "page_number": 1}),
            ("get_page", {"doc_id": "x' OR '1'='1", "page_number": 1}),
            ("get_figure", {"doc_id": doc_id, "page_number": 2, "figure_number": 1}),
            ("get_figure", {"doc_id": doc_id, "page_number": 2, "figure_number": 7}),
        ],
    )
    assert huge.is_error and huge.content[0].text.endswith(
        f"page_number {10**20} is out of range: solar_market_outlook_2025.pdf "
        f"(doc_id {doc_id}) has {n} page(s), numbered 1-{n}"
    )
    assert zero.is_error and "page_number 0 is out of range" in zero.content[0].text
    for bad in (unknown, injected):
        assert bad.is_error
        assert "the index holds 2 document(s); call list_documents" in bad.content[0].text
    assert "unknown doc_id '0123456789abcdef'" in unknown.content[0].text

    assert not figure.is_error
    assert figure.content[0].text.startswith("solar_market_outlook_2025.pdf, p. 2, figure 1: ")
    assert "Solar capacity" in figure.content[0].text
    assert figure.content[1].mime_type == "image/jpeg" and _images(figure)[0].size[0] > 50
    assert no_figure.is_error
    assert "p. 2 has no figure 7; it has 1 figure(s), numbered 1-1" in no_figure.content[0].text


def test_missing_index_exits_with_a_message(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    r = CliRunner().invoke(app, ["mcp", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no index at" in r.output


def test_budget_options_are_checked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    r = CliRunner().invoke(app, ["mcp", "--index", str(tmp_path), "--max-bytes", "1000"])
    assert r.exit_code == 2 and "max_bytes is 1000; at least 20000 bytes" in r.output
