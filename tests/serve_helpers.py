"""Helpers for the serve/MCP/explain tests: a real small index, a live server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from shared_fixtures import text_index_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
SOLAR = EXAMPLES / "solar_market_outlook_2025.pdf"
CHART_QUESTION = "Which region installed the most solar capacity between 2020 and 2024?"


def build_text_index(folder: Path, minilm_path: str, dpi: int = 72) -> Path:
    """A real index (MiniLM text, BM25, figure-text legs) of copies of the sample reports."""
    from mm_retriever.index import MultimodalIndex

    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for pdf in EXAMPLES.glob("*.pdf"):
        shutil.copy(pdf, docs / pdf.name)
    config = text_index_config(minilm_path)
    config.ingest.dpi = dpi
    index = MultimodalIndex.create(folder / "index", config)
    report = index.add([docs])
    assert report.ok and len(report.added) == 2, report.failed
    return folder / "index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on 127.0.0.1; yields its base URL; stops it."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
