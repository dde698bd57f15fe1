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
    assert names == {"search", "get_page", "list_documents"}
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
    assert hits.content[2].mime_type == "image/png"

    # an unknown doc id and an empty query are errors the agent can read
    assert scoped.is_error and "no document with id '__later__'" in scoped.content[0].text
    assert empty.is_error and "query is empty" in empty.content[0].text

    # a page by number: citation and text, then the image
    assert [c.type for c in page3.content] == ["text", "image"]
    assert page3.content[0].text.startswith("solar_market_outlook_2025.pdf, p. 3")
    assert no_page.is_error and "page_number must be a whole number from 1 to 3" in (
        no_page.content[0].text
    )


def test_missing_index_exits_with_a_message(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    r = CliRunner().invoke(app, ["mcp", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no index at" in r.output
