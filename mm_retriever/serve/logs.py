"""The service's log: one logfmt line per request (access log) and per job event.

Every line goes to the ``mm_retriever.serve`` logger (jobs to its child ``.jobs``) as
``key=value`` pairs, values with spaces or quotes quoted, e.g.::

    event=request method=POST path=/search status=200 ms=41.7 client=127.0.0.1
    event=job_done job=3f2a... kind=add files=2 added=2 unchanged=0 failed=0 pages=7 s=3.1

Query strings are left out of the access line (they hold users' questions). ``configure``
sends these loggers to stderr at INFO (``mm-retriever serve`` calls it), whatever the rest of
the program logs.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("mm_retriever.serve")

FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def logfmt(**fields: Any) -> str:
    """``key=value`` pairs in order; None values left out, strings quoted where needed."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
        if not text or any(c in text for c in ' "=\\') or any(ord(c) < 32 for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


def configure(level: int = logging.INFO) -> None:
    """Send the service's lines to stderr (once), independent of the root logger's level."""
    if any(getattr(h, "_mm_retriever_serve", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z"))
    handler._mm_retriever_serve = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False  # no second copy through the CLI's handler


class AccessLog:
    """ASGI middleware: one ``event=request`` line per HTTP request, after its response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                logfmt(
                    event="request",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status=status,
                    ms=(time.perf_counter() - start) * 1000,
                    client=client[0] if client else None,
                ),
            )
