"""Settings of the HTTP service: where the index is, keys, request limits."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from mm_retriever.limits import MAX_K, MAX_QUERY_CHARS


class ServeSettings(BaseModel):
    """What ``create_app`` needs. Keys default to ``$MM_RETRIEVER_READ_KEY`` / ``_ADMIN_KEY``.

    Without keys the service is open (bind it to 127.0.0.1). With an admin key, uploads and
    deletes need it; with a read key, every other endpoint but ``/healthz`` and the page's
    static files needs the read key or the admin key.
    """

    index: str = Field(description="index folder or URI")
    device: str | None = None
    read_key: str | None = Field(default_factory=lambda: os.environ.get("MM_RETRIEVER_READ_KEY"))
    admin_key: str | None = Field(default_factory=lambda: os.environ.get("MM_RETRIEVER_ADMIN_KEY"))
    max_upload_mb: float = Field(100.0, gt=0, description="largest request body (uploads)")
    max_json_kb: float = Field(2048.0, gt=0, description="largest JSON body (query images)")
    max_query_chars: int = Field(MAX_QUERY_CHARS, ge=1, le=MAX_QUERY_CHARS)
    max_k: int = Field(MAX_K, ge=1, le=MAX_K)
    min_score: float | None = Field(
        None, ge=0, le=1, description="relevance floor of every search (calibrated confidence)"
    )
    max_files: int = Field(50, ge=1, description="files per upload")
    workers: int = Field(
        default_factory=lambda: max(2, _cores()),
        ge=1,
        description="searches and overlays computed at once (more wait their turn)",
    )
    upload_dir: Path | None = Field(
        None, description="where uploaded files are kept (default: <index>/_uploads)"
    )
    create: bool = Field(False, description="create an empty index (default config) if absent")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_kb * 1024)


def _cores() -> int:
    """CPU cores this process may use (affinity where the OS has it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 2
