"""Which files ingestion reads, and their content-based ids."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

PDF_SUFFIXES = frozenset({".pdf"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
SUPPORTED_SUFFIXES = PDF_SUFFIXES | IMAGE_SUFFIXES


def document_id(path: str | Path) -> str:
    """The document id: the first 16 hex digits of the SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def display_path(path: str | Path) -> str:
    """``path`` as valid UTF-8 text: bytes of a file name that are not UTF-8 shown as ``\\xe9``.

    POSIX file names are bytes; Python keeps undecodable ones as lone surrogates, which cannot
    be stored (Arrow strings are UTF-8) or printed.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_supported(path: str | Path) -> bool:
    """Whether the file name has a suffix ingestion reads (.pdf, .png, .jpg, .jpeg)."""
    return Path(path).suffix.lower() in SUPPORTED_SUFFIXES


def iter_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders (recursively) into their supported files, sorted; keep files as given.

    Files named explicitly are kept even when missing or unsupported, so that reading them
    reports a clear error for that file alone. Hidden files and folders are skipped inside
    folders. Duplicates are dropped, first occurrence wins.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    out: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and is_supported(p)
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            found = [path]
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out
