"""An MCP server (stdio) over an index: agents search it and get cited pages back.

``mm-retriever mcp --index DIR`` runs it with the official ``mcp`` Python SDK. Tools:

- ``search(query, k, doc_ids, images, min_score)``: the best pages, each as a text block
  (citation, scores, confidence, the page text) followed by the page image (and the matched
  figure crops) as MCP image content; pages under ``min_score`` (calibrated confidence) left out;
- ``get_page(doc_id, page_number)``: one page's citation, text and image (read around a hit);
- ``list_documents()``: what the index holds (doc_id, file, pages), to scope a search.

An agent host config entry: ``{"command": "uv", "args": ["run", "--extra", "serve",
"mm-retriever", "mcp", "--index", "/path/to/index"]}``.

Arguments are checked against ``mm_retriever.limits`` (k, query length, document ids, page
numbers), with the same messages as the Python API, the CLI and HTTP.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    "to search only some documents. Each page has a confidence (0-1); pages marked 'weak "
    "match' probably do not hold the answer: say so rather than guess."
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
    index: MultimodalIndex, *, default_k: int = 5, min_score: float | None = None
) -> Any:
    """The MCP server object (``mcp.server.mcpserver.MCPServer``) with the tools above."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as e:
        raise MissingExtraError("mcp", extra="serve", purpose="the MCP server") from e

    from mm_retriever.ranking.relevance import check_min_score

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
        out: list[TextContent | ImageContent] = []
        for rank, page in enumerate(pages, 1):
            out.append(TextContent(type="text", text=page_text_block(page, rank)))
            if not images:
                continue
            b64 = page.image_base64()
            if b64:
                out.append(ImageContent(type="image", data=b64, mime_type=page.image_mime))
            for fig in page.figures:
                if fig.image_bytes:
                    data = base64.b64encode(fig.image_bytes).decode("ascii")
                    out.append(ImageContent(type="image", data=data, mime_type="image/png"))
        return out

    @server.tool()
    def get_page(
        doc_id: str, page_number: int, images: bool = True
    ) -> list[TextContent | ImageContent]:
        """One page by document id and 1-based page number (e.g. to read the page before or
        after a hit): its citation, text and image."""
        from mm_retriever.errors import MMRetrieverError
        from mm_retriever.limits import check_page_number
        from mm_retriever.types import FusedHit

        try:
            (doc_id,) = _known_documents(index, [doc_id])
            number = check_page_number(page_number, _n_pages(index, doc_id))
        except MMRetrieverError as e:
            raise ToolError(str(e)) from e
        found = index.retriever().hydrate([FusedHit(doc_id, number - 1, 0.0)], 1)
        if not found:
            raise ToolError(f"document '{doc_id}' has no page {number}")
        page = found[0]
        out: list[TextContent | ImageContent] = [
            TextContent(type="text", text=f"{page.citation}\n\n{page.text.strip()}")
        ]
        b64 = page.image_base64() if images else None
        if b64:
            out.append(ImageContent(type="image", data=b64, mime_type=page.image_mime))
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


def _known_documents(index: MultimodalIndex, doc_ids: list[str]) -> list[str]:
    """``doc_ids`` when each has the form of an id and names a document of the index."""
    from mm_retriever.errors import InvalidQueryError
    from mm_retriever.limits import check_doc_id, check_filters

    check_filters({"doc_id": doc_ids})
    ids = [check_doc_id(d) for d in doc_ids]
    unknown = [d for d in ids if not index.store.has_document(d)]
    if unknown:
        raise InvalidQueryError(
            f"no document with id {', '.join(repr(d) for d in unknown)}; see list_documents"
        )
    return ids


def _n_pages(index: MultimodalIndex, doc_id: str) -> int:
    return next((int(d["n_pages"]) for d in index.documents() if d["doc_id"] == doc_id), 0)


def run_stdio(
    index_uri: str | Path,
    *,
    device: str | None = None,
    default_k: int = 5,
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
    build_server(index, default_k=default_k, min_score=min_score).run("stdio")
