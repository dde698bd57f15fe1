"""The examples run offline up to the LLM call, and call an OpenAI-compatible endpoint when the
OPENAI_* variables are set (here a local stub server that records every request)."""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA = EXAMPLES / "data"
CHART_Q = "How much solar capacity was added in 2024?"
AGENT_ANSWER = "Solar capacity grew, see solar_market_outlook_2025.pdf p. 2."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples():
    assert list(DATA.glob("*.pdf")), f"no sample PDFs in {DATA} (run examples/make_sample_data.py)"
    sys.path.insert(0, str(EXAMPLES))
    try:
        names = ("langchain_chatbot", "llamaindex_agent", "chart_qa")
        yield {m: importlib.import_module(m) for m in names}
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def index_dir(examples, tmp_path_factory):
    """The examples' index over examples/data, built once (kept open so models stay loaded)."""
    path = tmp_path_factory.mktemp("examples") / "index"
    index = examples["chart_qa"].open_index(DATA, path)
    assert len(index.documents()) == len(list(DATA.glob("*.pdf")))
    yield path
    del index


@pytest.fixture
def offline(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


class StubOpenAI(BaseHTTPRequestHandler):
    """``POST /v1/chat/completions``: a tool call when tools are offered and none ran yet,
    else a fixed answer. Requests are kept in ``server.requests``."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        ran_tool = any(m.get("role") == "tool" for m in body["messages"])
        if body.get("tools") and not ran_tool:
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "search_pdfs", "arguments": json.dumps({"input": CHART_Q})},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": AGENT_ANSWER if ran_tool else "Stub [1]."}
            finish = "stop"
        reply = {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubOpenAI)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_MODEL", "stub-vision")
    yield server
    server.shutdown()
    server.server_close()


def _image_parts(request_body) -> list[dict]:
    user = [m for m in request_body["messages"] if m["role"] == "user"][-1]
    return [p for p in user["content"] if isinstance(p, dict) and p.get("type") == "image_url"]


# ------------------------------------------------------------------ offline


def test_chart_qa_offline(examples, index_dir, offline, tmp_path, capsys):
    out = tmp_path / "crops"
    (result,) = examples["chart_qa"].main(
        ["--index", str(index_dir), "-q", CHART_Q, "--out", str(out), "--max-image-side", "512"]
    )
    top = result["sources"][0]
    assert top.citation == "[1] solar_market_outlook_2025.pdf p. 2"
    assert top.page.figures and top.page.figures[0].caption.startswith("Figure 1: Solar capacity")
    saved = sorted(p.name for p in out.iterdir())
    assert f"{top.page.doc_id}-p0002-fig{top.page.figures[0].figure_index}.png" in saved
    assert f"{top.page.doc_id}-p0002.jpg" in saved
    assert "answer" not in result
    assert "no LLM configured" in capsys.readouterr().out


def test_langchain_chatbot_offline(examples, index_dir, offline):
    args = ["--index", str(index_dir), "-k", "2", "-q", CHART_Q]
    (turn,) = examples["langchain_chatbot"].main(args)
    assert turn["docs"][0].metadata["citation"] == "solar_market_outlook_2025.pdf, p. 2"
    human = turn["messages"][-1]
    assert [b["type"] for b in human.content] == ["text", "image", "text", "image", "text"]
    assert "answer" not in turn


def test_llamaindex_agent_offline(examples, index_dir, offline):
    (output,) = examples["llamaindex_agent"].main(["--index", str(index_dir), "-q", CHART_Q])
    assert output.tool_name == "search_pdfs"
    assert output.raw_output[0].node.metadata["citation"] == "solar_market_outlook_2025.pdf, p. 2"
    assert "Solar capacity" in output.content


# ------------------------------------------------------- with an endpoint


def test_chart_qa_calls_the_endpoint(examples, index_dir, endpoint, tmp_path):
    (result,) = examples["chart_qa"].main(
        ["--index", str(index_dir), "-q", CHART_Q, "--out", str(tmp_path)]
    )
    assert result["answer"] == "Stub [1]."
    ((path, body),) = endpoint.requests
    assert path == "/v1/chat/completions" and body["model"] == "stub-vision"
    assert body["messages"] == result["messages"]  # exactly what to_openai_messages built
    assert len(_image_parts(body)) >= 2  # page images and the chart crop


def test_langchain_chatbot_calls_the_endpoint(examples, index_dir, endpoint):
    turns = examples["langchain_chatbot"].main(
        ["--index", str(index_dir), "-k", "2", "-q", CHART_Q, "-q", "And in 2023?"]
    )
    assert [t["answer"] for t in turns] == ["Stub [1].", "Stub [1]."]
    first, second = (body for _, body in endpoint.requests)
    images = _image_parts(first)
    assert len(images) == 2 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    texts = [p["text"] for p in first["messages"][-1]["content"] if p["type"] == "text"]
    assert texts[0].startswith("[1] solar_market_outlook_2025.pdf, p. 2\n")
    # the second turn carries the first question and answer as history
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second["messages"][1]["content"] == CHART_Q


def test_llamaindex_agent_calls_the_endpoint(examples, index_dir, endpoint):
    (reply,) = examples["llamaindex_agent"].main(["--index", str(index_dir), "-q", CHART_Q])
    assert reply == AGENT_ANSWER
    first, second = (body for _, body in endpoint.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["search_pdfs"]
    tool_msg = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_msg["tool_call_id"] == "call_1"
    assert "Solar capacity" in tool_msg["content"]
