"""Optional bearer-token auth: a read key for searching, an admin key for uploads and deletes."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request


class Auth:
    """FastAPI dependencies ``read`` and ``admin``; a missing key means that level is open.

    The admin key also reads. Failures are 401 (no or unknown token) or 403 (a read key on an
    admin endpoint), with a ``WWW-Authenticate: Bearer`` header.
    """

    def __init__(self, read_key: str | None, admin_key: str | None) -> None:
        self.read_key = read_key or None
        self.admin_key = admin_key or None

    def read(self, request: Request) -> None:
        if self.read_key is None:
            return
        token = _token(request)
        if not (_same(token, self.read_key) or _same(token, self.admin_key)):
            raise _unauthorized("this endpoint needs the read key (Authorization: Bearer KEY)")

    def admin(self, request: Request) -> None:
        if self.admin_key is None:
            return
        token = _token(request)
        if _same(token, self.admin_key):
            return
        if _same(token, self.read_key):
            raise HTTPException(403, "uploads and deletes need the admin key, not the read key")
        raise _unauthorized("this endpoint needs the admin key (Authorization: Bearer KEY)")


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same(token: str | None, key: str | None) -> bool:
    return token is not None and key is not None and secrets.compare_digest(token, key)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})
