"""An MCP server (stdio) over an index: agents search it and get cited pages back.

``mm-retriever mcp --index DIR`` runs it with the official ``mcp`` Python SDK. Tools:

- ``search(query, k, doc_ids, images, min_score)``: the best pages, each as a text block
  (citation, scores, confidence, the page text) followed by the page image (and the matched
  figure crops) as MCP image content; pages under ``min_score`` (calibrated confidence) left out;
- ``get_page(doc_id, page_number)``: one page's citation, text and image (read around a hit);
- ``get_figure(doc_id, page_number, figure_number)``: one figure crop, with its caption;
- ``list_documents()``: what the index holds (doc_id, file, pages), to scope a search.

Every result stays within an image budget (``ResultBudget``): images at most 1568 px on the
long side and 1.15 megapixels, as JPEG, and at most 800 KB a result, base64 included, under
Claude Desktop's 1 MiB limit on a tool result (sources in ``mm_retriever.context.budget``).
Images that do not fit are left out and a closing text block names them and the tool that
fetches them.

An agent host config entry: ``{"command": "uv", "args": ["run", "--extra", "serve",
"mm-retriever", "mcp", "--index", "/path/to/index"]}``.

``search`` arguments are checked against ``mm_retriever.limits`` (k, query length, document ids),
with the same messages as the Python API, the CLI and HTTP.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mm_retriever.context.budget import (
    HOST_IMAGE_PIXELS,
    HOST_IMAGE_SIDE,
    HOST_MAX_BYTES,
    ContextBudget,
    Source,
    build_sources,
)
from mm_retriever.errors import MissingExtraError

try:  # module level: the SDK resolves the tool's annotations from these globals
    from mcp_types import ImageContent, TextContent
except ImportError:  # the serve extra is missing; build_server says so
    ImageContent = TextContent = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.types import RetrievedPage

INSTRUCTIONS = (
    "Search a collection of PDF documents (reports with charts, tables and figures). "
    "`search` returns the best pages: a citation ('file, p. N'), the page text and the page "
    "image. Cite pages as given. Use `list_documents` to see what is indexed and pass doc_ids "
    "to search only some documents. Results are kept under a size budget: images left out "
    "are named at the end, and `get_page` / `get_figure` fetch them one at a time. Each page "
    "has a confidence (0-1); pages marked 'weak match' probably do not hold the answer: say so "
    "rather than guess."
)
BLOCK_OVERHEAD = 100  # JSON around one content block: {"type": ..., "mimeType": ...}
ENVELOPE = 2_000  # the JSON-RPC envelope and the closing note


@dataclass(frozen=True)
class ResultBudget:
    """What one tool result may carry: image size and format, and its total size in bytes.

    ``max_bytes`` counts the result's JSON as sent: text blocks and base64 image data.
    """

    max_bytes: int = HOST_MAX_BYTES
    max_image_side: int = HOST_IMAGE_SIDE
    max_image_pixels: int | None = HOST_IMAGE_PIXELS
    jpeg_quality: int = 80
    max_figures_per_page: int = 4

    def __post_init__(self) -> None:
        if self.max_bytes < 20_000:
            raise ValueError(f"max_bytes is {self.max_bytes}; at least 20000 bytes are needed")
        if self.max_image_side < 64:
            raise ValueError(f"max_image_side is {self.max_image_side}; at least 64 pixels")

    def images(
        self, n_pages: int, image_bytes: int, *, page_images: bool, figures: bool
    ) -> ContextBudget:
        """The context budget of ``n_pages`` pages whose images may take ``image_bytes``."""
        return ContextBudget(
            max_pages=max(1, n_pages),
            max_chars_per_page=None,
            page_images=page_images,
            figures=figures,
            max_figures_per_page=self.max_figures_per_page,
            max_image_side=self.max_image_side,
            max_image_pixels=self.max_image_pixels,
            image_format="jpeg",
            jpeg_quality=self.jpeg_quality,
            max_image_bytes=max(0, image_bytes),
        )

    def chars_per_page(self, n_pages: int) -> int:
        """Page text kept per hit: 4000 characters, less when many hits share a small budget."""
        return max(200, min(4000, self.max_bytes // (4 * max(1, n_pages))))


def _json_size(text: str) -> int:
    return len(json.dumps(text)) + BLOCK_OVERHEAD


def omitted_block(sources: list[Source], budget: ResultBudget) -> str | None:
    """The closing note naming the images the budget left out and how to fetch them."""
    labels = [label for src in sources for label in src.omitted]
    if not labels:
        return None
    shown = "; ".join(labels[:12]) + (f"; and {len(labels) - 12} more" if len(labels) > 12 else "")
    return (
        f"{len(labels)} image(s) omitted (budget {budget.max_bytes // 1000} KB per result): "
        f"{shown}. Call get_page(doc_id, page_number) for a page image or "
        "get_figure(doc_id, page_number, figure_number) for a figure."
    )


def page_text_block(page: RetrievedPage, rank: int, max_chars: int = 4000) -> str:
    """The text part of one hit: citation, scores, figure captions, the page text."""
    legs = ", ".join(
        f"{leg} #{page.leg_ranks[leg]} ({page.leg_scores.get(leg, 0.0):.3g})"
        for leg in sorted(page.leg_ranks, key=page.leg_ranks.__getitem__)
    )
    lines = [
        f"[{rank}] {page.citation}",
        f"doc_id: {page.doc_id}  page_index: {page.page_index}  score: {page.score:.4f}"
        + _confidence(page),
        f"legs: {legs}",
    ]
    if page.title:
        lines.insert(1, f"title: {page.title}")
    for fig in page.figures:
        lines.append(f"matched figure {fig.figure_index + 1}: {fig.caption or '(no caption)'}")
    text = page.text.strip()
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + " …"
    lines += ["", text or "(no text on this page; see the image)"]
    return "\n".join(lines)


def _confidence(page: RetrievedPage) -> str:
    if page.confidence is None:
        return ""
    return f"  confidence: {page.confidence:.2f}" + (" (weak match)" if page.weak_match else "")


def build_server(
    index: MultimodalIndex,
    *,
    default_k: int = 5,
    budget: ResultBudget | None = None,
    min_score: float | None = None,
) -> Any:
    """The MCP server object (``mcp.server.mcpserver.MCPServer``) with the tools above."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as e:
        raise MissingExtraError("mcp", extra="serve", purpose="the MCP server") from e

    from mm_retriever.ranking.relevance import check_min_score

    budget = budget or ResultBudget()
    floor = check_min_score(min_score)
    server = MCPServer(name="mm-retriever", instructions=INSTRUCTIONS)

    @server.tool()
    def search(
        query: str,
        k: int = default_k,
        doc_ids: list[str] | None = None,
        images: bool = True,
        min_score: float | None = None,
    ) -> list[TextContent | ImageContent]:
        """Search the indexed PDFs; returns the best pages with citation, text and image.

        query: the question or keywords. k: pages to return (1-100). doc_ids: only these
        documents (see list_documents). images: include page images and matched figures.
        min_score: leave out pages whose confidence (0-1) is lower.
        """
        from mm_retriever.errors import MMRetrieverError

        if not query.strip():
            raise ToolError("query is empty: pass the question or keywords to search for")
        try:
            filters = {"doc_id": _known_documents(index, doc_ids)} if doc_ids else None
            pages = index.retriever(min_score=floor).retrieve(
                query, k=k, filters=filters, min_score=min_score
            )
        except (MMRetrieverError, ValueError) as e:  # bad filters etc.: tell the agent why
            raise ToolError(str(e)) from e
        if not pages:
            return [TextContent(type="text", text="No matching pages.")]
        chars = budget.chars_per_page(len(pages))
        texts = [page_text_block(page, rank, chars) for rank, page in enumerate(pages, 1)]
        n_images = len(pages) * (1 + budget.max_figures_per_page) if images else 0
        spare = (
            budget.max_bytes - ENVELOPE - sum(map(_json_size, texts)) - n_images * BLOCK_OVERHEAD
        )
        sources = build_sources(
            pages, budget.images(len(pages), spare, page_images=images, figures=images)
        )
        by_key = {src.page.key: src for src in sources}
        out: list[TextContent | ImageContent] = []
        for page, text in zip(pages, texts, strict=True):
            out.append(TextContent(type="text", text=text))
            for img in by_key[page.key].images:
                out.append(ImageContent(type="image", data=img.base64(), mime_type=img.mime_type))
        if note := omitted_block(sources, budget):
            out.append(TextContent(type="text", text=note))
        return out

    @server.tool()
    def get_page(
        doc_id: str, page_number: int, images: bool = True
    ) -> list[TextContent | ImageContent]:
        """One page by document id and 1-based page number (e.g. to read the page before or
        after a hit): its citation, text and image."""
        from mm_retriever.types import FusedHit

        doc = _document(index, doc_id, ToolError)
        _check_page(doc, page_number, ToolError)
        found = index.retriever().hydrate([FusedHit(doc_id, int(page_number) - 1, 0.0)], 1)
        if not found:
            raise ToolError(f"{_name(doc)} p. {page_number} could not be read from the index")
        page = found[0]
        page.figures = []  # the whole page; figures through get_figure
        text = f"{page.citation}\n\n{page.text.strip()}"
        spare = budget.max_bytes - ENVELOPE - _json_size(text) - BLOCK_OVERHEAD
        sources = build_sources([page], budget.images(1, spare, page_images=images, figures=False))
        out: list[TextContent | ImageContent] = [TextContent(type="text", text=text)]
        for img in sources[0].images:
            out.append(ImageContent(type="image", data=img.base64(), mime_type=img.mime_type))
        if note := omitted_block(sources, budget):
            out.append(TextContent(type="text", text=note))
        return out

    @server.tool()
    def get_figure(
        doc_id: str, page_number: int, figure_number: int
    ) -> list[TextContent | ImageContent]:
        """One figure crop (chart, table, picture) by document id, 1-based page number and
        1-based figure number on that page (as search lists them as 'matched figure N')."""
        from mm_retriever.context.budget import ContextImage, downscale
        from mm_retriever.store import FIGURES

        doc = _document(index, doc_id, ToolError)
        _check_page(doc, page_number, ToolError)
        rows = index.store.rows_matching(
            FIGURES,
            {"doc_id": doc_id, "page_index": int(page_number) - 1},
            ["doc_id", "page_index", "figure_index", "bbox", "caption", "image"],
        )
        row = next((r for r in rows if r["figure_index"] == int(figure_number) - 1), None)
        if row is None:
            raise ToolError(
                f"{_name(doc)} p. {page_number} has no figure {figure_number}; it has "
                f"{len(rows)} figure(s)" + (f", numbered 1-{len(rows)}" if rows else "")
            )
        index.page_images.fill_figures([row])  # crops of documents kept as their source file
        text = f"{_name(doc)}, p. {page_number}, figure {figure_number}: "
        text += row["caption"] or "(no caption)"
        out: list[TextContent | ImageContent] = [TextContent(type="text", text=text)]
        if row["image"]:
            data, mime = downscale(
                row["image"],
                budget.max_image_side,
                quality=budget.jpeg_quality,
                max_pixels=budget.max_image_pixels,
                to_jpeg=True,
            )
            img = ContextImage(text, data, mime)
            if img.base64_size + _json_size(text) + ENVELOPE <= budget.max_bytes:
                out.append(ImageContent(type="image", data=img.base64(), mime_type=mime))
            else:
                out.append(TextContent(type="text", text="figure image omitted (budget)"))
        return out

    @server.tool()
    def list_documents() -> str:
        """The indexed documents: doc_id, file name, title, number of pages (JSON)."""
        docs = [
            {
                "doc_id": d["doc_id"],
                "file": Path(d["source"]).name,
                "title": d["title"],
                "n_pages": d["n_pages"],
            }
            for d in index.documents()
        ]
        return json.dumps(docs, indent=1)

    return server


def _document(index: MultimodalIndex, doc_id: str, error: type[Exception]) -> dict[str, Any]:
    """The ``documents`` row of ``doc_id``; ``error`` with what is wrong otherwise."""
    docs = index.documents()
    doc = next((d for d in docs if d["doc_id"] == doc_id), None)
    if doc is None:
        raise error(
            f"unknown doc_id {doc_id!r}: the index holds {len(docs)} document(s); "
            "call list_documents for their doc_ids"
        )
    return doc


def _known_documents(index: MultimodalIndex, doc_ids: list[str]) -> list[str]:
    """``doc_ids`` when each has the form of an id and names a document of the index."""
    from mm_retriever.errors import InvalidQueryError
    from mm_retriever.limits import check_doc_id, check_filters

    check_filters({"doc_id": doc_ids})
    for doc_id in doc_ids:
        _document(index, check_doc_id(doc_id), InvalidQueryError)
    return list(doc_ids)


def _check_page(doc: dict[str, Any], page_number: int, error: type[Exception]) -> None:
    n = int(doc["n_pages"])
    if not 1 <= page_number <= n:
        raise error(
            f"page_number {page_number} is out of range: {_name(doc)} (doc_id "
            f"{doc['doc_id']}) has {n} page(s), numbered 1-{n}"
        )


def _name(doc: dict[str, Any]) -> str:
    return Path(doc["source"]).name


def run_stdio(
    index_uri: str | Path,
    *,
    device: str | None = None,
    default_k: int = 5,
    budget: ResultBudget | None = None,
    min_score: float | None = None,
) -> None:
    """Open the index and serve MCP over stdin/stdout until the client disconnects."""
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(index_uri):
        raise MMRetrieverError(
            f"no index at {index_uri}; build one: mm-retriever index PATH --index {index_uri}"
        )
    index = MultimodalIndex.open(index_uri, device=device)
    build_server(index, default_k=default_k, budget=budget, min_score=min_score).run("stdio")
