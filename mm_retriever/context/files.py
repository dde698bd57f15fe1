"""Write page images and figure crops of retrieved pages to a folder (stable file names)."""

from __future__ import annotations

from pathlib import Path

from mm_retriever.types import RetrievedFigure, RetrievedPage

_EXT = {"image/jpeg": ".jpg", "image/png": ".png"}


def page_image_name(page: RetrievedPage) -> str:
    """``{doc_id}-p{page_number:04d}.jpg``: unique per page of an index."""
    return f"{page.doc_id}-p{page.page_number:04d}{_EXT.get(page.image_mime, '.jpg')}"


def figure_image_name(page: RetrievedPage, figure: RetrievedFigure) -> str:
    """``{doc_id}-p{page_number:04d}-fig{figure_index}.png``."""
    return f"{page.doc_id}-p{page.page_number:04d}-fig{figure.figure_index}.png"


def save_page_image(
    page: RetrievedPage, folder: str | Path, *, reuse_existing: bool = True
) -> str | None:
    """Path of the page image in ``folder`` (written once); None when the page has no image.

    With ``reuse_existing`` a page that already has an image file keeps that path.
    """
    own = page.image_path if page.image_path and Path(page.image_path).is_file() else None
    if reuse_existing and own:
        return own
    data = page.image_bytes or (Path(own).read_bytes() if own else None)
    if not data:
        return None
    path = Path(folder) / page_image_name(page)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def save_figure_image(
    page: RetrievedPage, figure: RetrievedFigure, folder: str | Path
) -> str | None:
    """Write a figure crop (PNG) into ``folder`` (once) and return its path; None without one."""
    if not figure.image_bytes:
        return None
    path = Path(folder) / figure_image_name(page, figure)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(figure.image_bytes)
    return str(path)
