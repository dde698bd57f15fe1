"""Request body limits, enforced before the body is read (ASGI middleware)."""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


class BodyLimit:
    """Refuse bodies over ``max_bytes`` (``max_json_bytes`` for non-multipart) with a 413.

    Checks ``Content-Length`` first; bodies without one (chunked) are counted as they arrive.
    """

    def __init__(self, app: Any, max_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").decode("latin-1")
        limit = self.max_bytes if ctype.startswith("multipart/") else self.max_json_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _reply(send, 400, "invalid Content-Length")
                return
            if too_big:
                await _reply(send, 413, f"request body over the limit of {limit} bytes")
                return
        seen = 0
        replied = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal replied
            if message["type"] == "http.response.start":
                replied = True
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            if not replied:
                await _reply(send, 413, f"request body over the limit of {limit} bytes")


class _TooLarge(Exception):
    pass


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
