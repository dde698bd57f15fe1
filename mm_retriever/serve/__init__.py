"""HTTP service and search page (``mm-retriever serve``); needs the ``serve`` extra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mm_retriever.errors import MissingExtraError
from mm_retriever.serve.settings import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServeSettings", "create_app", "run"]


def create_app(settings: ServeSettings) -> FastAPI:
    """The FastAPI app over ``settings.index`` (see ``mm_retriever.serve.app``)."""
    try:
        from mm_retriever.serve.app import create_app as _create
    except ImportError as e:
        raise MissingExtraError("fastapi", extra="serve", purpose="the HTTP service") from e
    return _create(settings)


def run(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    """Serve the app with uvicorn until interrupted; the service's access and job lines go
    to stderr (``serve.logs``), in place of uvicorn's own access log."""
    try:
        import uvicorn
    except ImportError as e:
        raise MissingExtraError("fastapi", extra="serve", purpose="the HTTP service") from e
    from mm_retriever.serve.logs import configure

    configure()
    kwargs.setdefault("access_log", False)
    uvicorn.run(create_app(settings), host=host, port=port, **kwargs)
