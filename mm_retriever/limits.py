"""The limits of a search, the same on every surface: the Python API, the CLI, HTTP and MCP.

Each check raises ``InvalidQueryError`` with one message per mistake, and every surface passes
that message on as it is (HTTP: a 422 ``detail``; MCP: the tool error; CLI: the error line).

========================  ===========================  ======================================
what                      limit                        why
========================  ===========================  ======================================
``k``                     1 to ``MAX_K`` (100)         more pages than an agent or a person reads
query text                ``MAX_QUERY_CHARS`` (4,000)  encoders read ~512 tokens; a pasted book
                                                       only slows BM25 down
values in one filter      ``MAX_FILTER_VALUES`` (1000) a doc-id list is a SQL ``IN`` list
query image               ``MAX_IMAGE_PIXELS`` (40 M)  a decompression bomb stops here
query image file/bytes    ``MAX_IMAGE_BYTES`` (20 MiB)
document id (MCP, HTTP)   ``DOC_ID_PATTERN``           ids are hex digests; anything else is a typo
page number (MCP)         1 to the document's pages   checked by ``mcp_server._check_page``
========================  ===========================  ======================================
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any

from mm_retriever.errors import InvalidQueryError

MAX_K = 100
MAX_QUERY_CHARS = 4000
MAX_FILTER_VALUES = 1000
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
DOC_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
_DOC_ID = re.compile(DOC_ID_PATTERN)


def check_k(k: object, max_k: int = MAX_K) -> int:
    """``k`` as an int from 1 to ``max_k``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= max_k:
        raise InvalidQueryError(f"k must be a whole number from 1 to {max_k}, got {k!r}")
    return int(k)


def check_query_text(text: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    """``text`` unless it is longer than ``max_chars`` characters."""
    if len(text) > max_chars:
        raise InvalidQueryError(
            f"the query is {len(text)} characters long; the limit is {max_chars}"
        )
    return text


def check_filters(filters: Mapping[str, Any] | None) -> None:
    """No list in ``filters`` (a column's values, or an ``in`` operator's) is longer than
    ``MAX_FILTER_VALUES``; columns, operators and types are checked by ``mm_retriever.filters``."""
    if not isinstance(filters, Mapping):
        return
    for column, spec in filters.items():
        lists = list(spec.values()) if isinstance(spec, Mapping) else [spec]
        for values in lists:
            many = isinstance(values, list | tuple | set | frozenset)
            if many and len(values) > MAX_FILTER_VALUES:
                raise InvalidQueryError(
                    f"filter '{column}' lists {len(values)} values; the limit is "
                    f"{MAX_FILTER_VALUES}"
                )


def check_image_size(width: int, height: int) -> None:
    """A query image of ``width`` x ``height`` pixels is within ``MAX_IMAGE_PIXELS``."""
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidQueryError(
            f"the query image is {width}x{height} pixels; the limit is "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )


def check_image_bytes(n_bytes: int) -> None:
    """An encoded query image (a file, base64) of ``n_bytes`` is within ``MAX_IMAGE_BYTES``."""
    if n_bytes > MAX_IMAGE_BYTES:
        raise InvalidQueryError(
            f"the query image is {n_bytes} bytes; the limit is {MAX_IMAGE_BYTES // 2**20} MiB"
        )


def check_doc_id(doc_id: object) -> str:
    """``doc_id`` when it has the form of a document id (letters, digits, '-', '_'; <= 64)."""
    if not isinstance(doc_id, str) or not _DOC_ID.match(doc_id):
        raise InvalidQueryError(
            f"{doc_id!r} is not a document id (letters, digits, '-' and '_', at most 64); "
            "list the documents to see their ids"
        )
    return doc_id


def reads_images(leg: Any) -> bool:
    """Whether a leg can use a query image: its ``reads_images`` attribute (plugins), else the
    page leg (ColPali reads images) and a figure leg with an image model."""
    flag = getattr(leg, "reads_images", None)
    if flag is not None:
        return bool(flag)
    kind = getattr(leg, "kind", "")
    return kind == "page" or (kind == "figure" and getattr(leg, "image_encoder", None) is not None)


def check_search(
    query: Any, k: object, filters: Mapping[str, Any] | None, legs: Mapping[str, Any]
) -> int:
    """Every limit of one search (``query``: a ``Query``; ``legs``: name -> leg): ``k`` as an
    int. An image-only query needs a leg that reads images."""
    k = check_k(k)
    check_query_text(query.text)
    if query.image is not None:
        check_image_size(*query.image.size)
        if not query.text and not any(reads_images(leg) for leg in legs.values()):
            raise InvalidQueryError(
                "this is an image-only query, and none of the legs searched "
                f"({', '.join(legs) or 'none'}) reads images: add a question in words, or "
                "search an index with the page leg or a figure leg with an image model"
            )
    check_filters(filters)
    return k
