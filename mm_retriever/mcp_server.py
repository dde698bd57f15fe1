"""An MCP server (stdio) over an index: agents search it and get cited pages back.

``mm-retriever mcp --index DIR`` runs it with the official ``mcp`` Python SDK. Tools:

- ``search(query, k, doc_ids, images, filters)``: the best pages, each as a text block
  (citation, scores, the document's metadata, the page text) followed by the page image (and
  the matched figure crops) as MCP image content; ``filters`` as in Python and HTTP, e.g.
  ``{"metadata": {"tenant": "acme", "year": {"gte": 2021}}}``;
- ``get_page(doc_id, page_number)``: one page's citation, text and image (read around a hit);
- ``list_documents()``: what the index holds (doc_id, file, pages, metadata), to scope a search.

An agent host config entry: ``{"command": "uv", "args": ["run", "--extra", "serve",
"mm-retriever", "mcp", "--index", "/path/to/index"]}``.
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
    "to search only some documents."
)
MAX_K = 20


def page_text_block(page: RetrievedPage, rank: int, max_chars: int = 4000) -> str:
    """The text part of one hit: citation, scores, figure captions, the page text."""
    legs = ", ".join(
        f"{leg} #{page.leg_ranks[leg]} ({page.leg_scores.get(leg, 0.0):.3g})"
        for leg in sorted(page.leg_ranks, key=page.leg_ranks.__getitem__)
    )
    lines = [
        f"[{rank}] {page.citation}",
        f"doc_id: {page.doc_id}  page_index: {page.page_index}  score: {page.score:.4f}",
        f"legs: {legs}",
    ]
    if page.metadata:
        lines.append(f"metadata: {json.dumps(page.metadata, ensure_ascii=False, sort_keys=True)}")
    if page.title:
        lines.insert(1, f"title: {page.title}")
    for fig in page.figures:
        lines.append(f"matched figure {fig.figure_index + 1}: {fig.caption or '(no caption)'}")
    text = page.text.strip()
    if len(text) > max_chars:
        text = text[:max_chars].rstrip() + " …"
    lines += ["", text or "(no text on this page; see the image)"]
    return "\n".join(lines)


def build_server(index: MultimodalIndex, *, default_k: int = 5) -> Any:
    """The MCP server object (``mcp.server.mcpserver.MCPServer``) with the tools above."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as e:
        raise MissingExtraError("mcp", extra="serve", purpose="the MCP server") from e

    server = MCPServer(name="mm-retriever", instructions=INSTRUCTIONS)

    @server.tool()
    def search(
        query: str,
        k: int = default_k,
        doc_ids: list[str] | None = None,
        images: bool = True,
        filters: dict[str, Any] | None = None,
    ) -> list[TextContent | ImageContent]:
        """Search the indexed PDFs; returns the best pages with citation, text and image.

        query: the question or keywords. k: pages to return (1-20). doc_ids: only these
        documents (see list_documents). images: include page images and matched figures.
        filters: e.g. {"metadata": {"tenant": "acme", "year": {"gte": 2021}, "tags": {"in":
        ["q3"]}}}, {"source": "report.pdf"}, {"page_index": {"lte": 9}}; metadata operators:
        eq ne gt gte lt lte in nin contains any all text_match is_empty, "$or"/"$and" lists.
        """
        from mm_retriever.errors import MMRetrieverError

        if not query.strip():
            raise ToolError("query is empty: pass the question or keywords to search for")
        k = max(1, min(int(k), MAX_K))
        if filters is not None and not isinstance(filters, dict):
            raise ToolError('filters must be an object, e.g. {"metadata": {"tenant": "acme"}}')
        wanted = dict(filters or {})
        if doc_ids:
            if "doc_id" in wanted:
                raise ToolError("give doc_ids or filters.doc_id, not both")
            wanted["doc_id"] = list(doc_ids)
        try:
            pages = index.retriever().retrieve(query, k=k, filters=wanted or None)
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
        from mm_retriever.types import FusedHit

        if not index.store.has_document(doc_id):
            raise ToolError(f"no document '{doc_id}'; see list_documents")
        found = index.retriever().hydrate([FusedHit(doc_id, int(page_number) - 1, 0.0)], 1)
        if not found or not 1 <= page_number <= _n_pages(index, doc_id):
            raise ToolError(f"document '{doc_id}' has no page {page_number}")
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
                "metadata": d["metadata"],
            }
            for d in index.documents()
        ]
        return json.dumps(docs, indent=1)

    return server


def _n_pages(index: MultimodalIndex, doc_id: str) -> int:
    return next((int(d["n_pages"]) for d in index.documents() if d["doc_id"] == doc_id), 0)


def run_stdio(index_uri: str | Path, *, device: str | None = None, default_k: int = 5) -> None:
    """Open the index and serve MCP over stdin/stdout until the client disconnects."""
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(index_uri):
        raise MMRetrieverError(
            f"no index at {index_uri}; build one: mm-retriever index PATH --index {index_uri}"
        )
    index = MultimodalIndex.open(index_uri, device=device)
    build_server(index, default_k=default_k).run("stdio")
