"""A folder of files with a size limit: the least recently used files are evicted first.

Retrievers write page images here for ``RetrievedPage.image_path`` (outside the index, so that
searching changes nothing in it). Every hit touches the file's mtime, so eviction by mtime is
least-recently-used; the limit is ``MM_RETRIEVER_IMAGE_CACHE_MB`` (default 1024 MB) or
``ImageCache(max_bytes=...)``. Several processes may share a folder: each evicts by a scan of
the folder, so the limit holds whichever process wrote last.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

ENV_LIMIT = "MM_RETRIEVER_IMAGE_CACHE_MB"
DEFAULT_LIMIT_MB = 1024


def default_limit() -> int:
    """Bytes allowed in an image cache: ``$MM_RETRIEVER_IMAGE_CACHE_MB`` or 1024 MB."""
    raw = os.environ.get(ENV_LIMIT, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_LIMIT_MB
    except ValueError as exc:
        raise ValueError(f"{ENV_LIMIT} must be a number of megabytes, got {raw!r}") from exc
    return int(max(mb, 0) * (1 << 20))


class ImageCache:
    """Files under ``root`` (relative names), at most ``max_bytes`` in all (LRU eviction)."""

    def __init__(self, root: str | Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = default_limit() if max_bytes is None else int(max_bytes)
        self._used: int | None = None  # bytes under root as this process knows it
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ImageCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def get(self, name: str) -> Path | None:
        """The cached file ``name`` (marked as just used), or None."""
        path = self.root / name
        try:
            os.utime(path)
        except OSError:
            return None
        return path

    def put(self, name: str, data: bytes) -> Path | None:
        """Write ``data`` as ``name`` (atomically) and evict old files beyond the limit.

        None when it cannot be kept: larger than the limit, or the folder is not writable.
        """
        if len(data) > self.max_bytes:
            return None
        path = self.root / name
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    Path(tmp).unlink()
            return None
        with self._lock:
            if self._used is None:
                self._used = self.size()
            else:
                self._used += len(data)
            if self._used > self.max_bytes:
                self._used = self._evict(keep=path)
        return path

    def size(self) -> int:
        """Bytes of the files under ``root``."""
        return sum(size for _, _, size in self._files())

    def evict(self) -> int:
        """Remove least recently used files until the folder fits the limit; bytes left."""
        with self._lock:
            self._used = self._evict()
            return self._used

    def _evict(self, keep: Path | None = None) -> int:
        files = sorted(self._files())  # oldest mtime first
        used = sum(size for _, _, size in files)
        for _, path, size in files:
            if used <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                used -= size
        return used

    def _files(self) -> list[tuple[float, Path, int]]:
        out = []
        if not self.root.is_dir():
            return out
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                if n.endswith(".tmp"):
                    continue
                p = Path(dirpath) / n
                with contextlib.suppress(OSError):
                    st = p.stat()
                    out.append((st.st_mtime, p, st.st_size))
        return out
