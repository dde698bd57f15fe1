"""The FastAPI app: search, page images and overlays, documents, jobs, the search page.

``create_app(ServeSettings(index="DIR"))`` opens the index once; searches run in the server's
thread pool against it while one background writer (``jobs.Writer``) adds and deletes
documents. OpenAPI docs at ``/docs`` (Swagger UI) and ``/redoc``, both from files bundled by the
``fastapi-offline`` package and served here, so they work without internet access. Every
request gets one access-log line and every job its lines (``serve.logs``).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import shutil
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from mm_retriever.errors import EmptyQueryError, InvalidQueryError, MMRetrieverError
from mm_retriever.limits import (
    DOC_ID_PATTERN,
    MAX_K,
    check_image_bytes,
    check_image_size,
    check_k,
    check_query_text,
)
from mm_retriever.serve.auth import Auth
from mm_retriever.serve.jobs import Writer, sweep_uploads
from mm_retriever.serve.limits import BodyLimit
from mm_retriever.serve.logs import AccessLog, logfmt
from mm_retriever.serve.settings import ServeSettings

log = logging.getLogger("mm_retriever.serve")

STATIC = Path(__file__).parent / "static"
DOC_ID = DOC_ID_PATTERN
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._\- ]+")
_MAGIC = {
    ".pdf": (b"%PDF",),
    ".png": (b"\x89PNG",),
    ".jpg": (b"\xff\xd8",),
    ".jpeg": (b"\xff\xd8",),
}

DocId = Annotated[str, PathParam(pattern=DOC_ID, description="document id (see GET /documents)")]
PageIndex = Annotated[int, PathParam(ge=0, le=100_000, description="0-based page index")]


class SearchRequest(BaseModel):
    """A search: text and/or a query image, how many pages, filters, legs, fusion."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, description="the question or keywords")
    image: str | None = Field(None, description="a query image as base64 or a data: URL (PNG/JPEG)")
    k: int = Field(5, description=f"pages to return (1 to {MAX_K}, or the server's max_k)")
    filters: dict[str, Any] | None = Field(
        None,
        description='structured filters, e.g. {"doc_id": ["a1b2..."]} or {"page_index": 3}',
    )
    legs: list[str] | None = Field(None, description="legs to use (default: all)")
    fusion: Literal["rrf", "weighted"] | None = Field(None, description="fusion method")
    weights: dict[str, float] | None = Field(None, description="per-leg fusion weights")
    raw_query: bool = Field(
        False,
        description="search with the question as written: keep answer-format instructions, "
        "no financial-term expansion",
    )
    min_score: float | None = Field(
        None,
        description="relevance floor: drop pages whose calibrated confidence (0-1) is lower "
        "(default: the server's --min-score)",
    )


class JobAccepted(BaseModel):
    job_id: str
    status_url: str
    status: str


def create_app(settings: ServeSettings) -> FastAPI:
    """The service over the index at ``settings.index`` (opened now, so errors show early)."""
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(settings.index):
        if not settings.create:
            raise MMRetrieverError(
                f"no index at {settings.index}: build one with "
                f"`mm-retriever index PATH --index {settings.index}`, or pass --create"
            )
        from mm_retriever.config import IndexConfig

        MultimodalIndex.create(settings.index, IndexConfig())
    index = MultimodalIndex.open(settings.index, device=settings.device)
    upload_root = settings.upload_dir or (
        index.path / "_uploads" if index.path is not None else Path.cwd() / "mm-retriever-uploads"
    )
    sweep_uploads(index, upload_root)  # files of jobs a killed server left behind
    writer = Writer(index, upload_root=upload_root)
    # CPU-bound work (query encoding, scoring, overlays) runs at most `workers` at a time:
    # more at once only thrash the cores and stretch every request's latency
    compute = threading.BoundedSemaphore(settings.workers)
    auth = Auth(settings.read_key, settings.admin_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        writer.close()

    app = FastAPI(
        title="mm-retriever",
        summary="Multimodal retrieval over PDFs: page images, text (dense + BM25), figures.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # served below from local files, not from a CDN
        redoc_url=None,
    )
    app.state.index = index
    app.state.writer = writer
    app.state.settings = settings
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_upload_bytes, max_json_bytes=settings.max_json_bytes
    )
    app.add_middleware(AccessLog)  # outermost: also logs what BodyLimit refuses
    _error_handlers(app)
    read = [Depends(auth.read)]
    admin = [Depends(auth.admin)]

    # ------------------------------------------------------------- search
    @app.post("/search", dependencies=read, tags=["search"])
    def search(body: SearchRequest, request: Request) -> list[dict[str, Any]]:
        """The best pages for a query: the same JSON as `mm-retriever search --json`, plus
        `image_url`, `overlay_url` and each figure's `image_url`."""
        from mm_retriever.protocols import Query as RQuery

        text = check_query_text((body.query or "").strip(), settings.max_query_chars)
        check_k(body.k, settings.max_k)
        image = _decode_image(body.image) if body.image else None
        if not text and image is None:
            raise HTTPException(422, "give a text query, an image, or both")
        retriever = index.retriever(
            fusion=body.fusion,
            legs=body.legs,
            weights=body.weights,
            clean_query=not body.raw_query,
            expand_query=not body.raw_query,
            min_score=settings.min_score,
        )
        with compute:
            pages = retriever.retrieve(
                RQuery(text=text, image=image),
                k=body.k,
                filters=body.filters,
                min_score=body.min_score,
            )
        return [page_json(p, text, body.legs) for p in pages]

    # ------------------------------------------------------------- pages
    @app.get("/pages/{doc_id}/{page_index}", dependencies=read, tags=["pages"])
    def page_image(doc_id: DocId, page_index: PageIndex) -> Response:
        """The stored page image (JPEG or PNG)."""
        _page(index, doc_id, page_index, ["page_index"])
        found = index.page_images.page(doc_id, page_index)  # stored, or rendered from source
        if found is None:
            raise HTTPException(404, f"page {page_index} of '{doc_id}' has no stored image")
        return Response(found[0], media_type=found[1], headers=_CACHE)

    @app.get("/pages/{doc_id}/{page_index}/overlay", dependencies=read, tags=["pages"])
    def page_overlay(
        doc_id: DocId,
        page_index: PageIndex,
        q: Annotated[str, Query(min_length=1, description="the query")],
        legs: Annotated[list[str] | None, Query(description="legs to show")] = None,
        max_width: Annotated[int | None, Query(ge=64, le=4000)] = None,
        token: Annotated[
            int | None, Query(ge=0, description="page leg: one query token's map (see explain)")
        ] = None,
    ) -> Response:
        """The page with where each leg matched `q` drawn over it: query words highlighted,
        matched chunks tinted, matched figures framed, the page leg's heat map (PNG)."""
        from mm_retriever.explain import overlay_png

        _check_query(q, settings)
        _page(index, doc_id, page_index, ["page_index"])
        with compute:
            png = overlay_png(
                index,
                q,
                doc_id,
                page_index,
                legs=_legs(index, legs),
                max_width=max_width,
                token=token,
            )
        return Response(png, media_type="image/png", headers=_CACHE)

    @app.get("/pages/{doc_id}/{page_index}/explain", dependencies=read, tags=["pages"])
    def page_explain(
        doc_id: DocId,
        page_index: PageIndex,
        q: Annotated[str, Query(min_length=1)],
        legs: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        """Where each leg matched `q` on the page, as JSON (boxes in PDF points, heat map grid)."""
        from mm_retriever.explain import explain_page

        _check_query(q, settings)
        _page(index, doc_id, page_index, ["page_index"])
        with compute:
            found = explain_page(index, q, doc_id, page_index, legs=_legs(index, legs))
        return found.to_dict()

    @app.get("/figures/{doc_id}/{page_index}/{figure_index}", dependencies=read, tags=["pages"])
    def figure_image(
        doc_id: DocId, page_index: PageIndex, figure_index: Annotated[int, PathParam(ge=0)]
    ) -> Response:
        """A figure crop (PNG)."""
        from mm_retriever.store import FIGURES

        key = {"doc_id": doc_id, "page_index": page_index, "figure_index": figure_index}
        rows = index.store.rows_matching(FIGURES, key, ["doc_id", "page_index", "bbox", "image"])
        index.page_images.fill_figures(rows)  # crops of documents kept as their source file
        if not rows or not rows[0]["image"] or not index.store.has_document(doc_id):
            raise HTTPException(404, f"no figure {figure_index} on page {page_index} of '{doc_id}'")
        return Response(rows[0]["image"], media_type="image/png", headers=_CACHE)

    # ------------------------------------------------------------- documents
    @app.get("/documents", dependencies=read, tags=["documents"])
    def documents() -> list[dict[str, Any]]:
        """The indexed documents: doc_id, source file name, title, pages, when added."""
        return [
            {
                "doc_id": d["doc_id"],
                "name": Path(d["source"]).name,
                "source": d["source"],
                "title": d["title"],
                "n_pages": d["n_pages"],
                "added_at": d["added_at"],
            }
            for d in index.documents()
        ]

    @app.post("/documents", dependencies=admin, status_code=202, tags=["documents"])
    async def upload(
        files: Annotated[list[UploadFile], File(description="PDF, PNG or JPEG files")],
    ) -> JobAccepted:
        """Upload files; they are indexed in the background. Follow `status_url`."""
        # a job folder (jobs.JOB_FOLDER): what the start-up sweep may clean
        folder = upload_root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        names, paths = [], []
        try:
            if len(files) > settings.max_files:
                raise HTTPException(413, f"{len(files)} files; the limit is {settings.max_files}")
            for f in files:
                name, path = await _save_upload(f, folder, settings.max_upload_bytes)
                names.append(name)
                paths.append(path)
        except HTTPException as e:
            shutil.rmtree(folder, ignore_errors=True)
            log.warning(
                logfmt(
                    event="upload_rejected", files=len(files), status=e.status_code, reason=e.detail
                )
            )
            raise
        job = writer.submit_add(names, paths)
        return JobAccepted(job_id=job.id, status_url=f"/jobs/{job.id}", status=job.status)

    @app.delete("/documents/{doc_id}", dependencies=admin, status_code=202, tags=["documents"])
    def delete_document(doc_id: DocId) -> JobAccepted:
        """Delete a document from every table (in the background, after earlier jobs)."""
        if not index.store.has_document(doc_id):
            raise HTTPException(404, f"no document with id '{doc_id}'")
        job = writer.submit_delete(doc_id)
        return JobAccepted(job_id=job.id, status_url=f"/jobs/{job.id}", status=job.status)

    @app.get("/jobs/{job_id}", dependencies=read, tags=["documents"])
    def job_status(job_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{1,32}$")]) -> dict:
        """A job's status (`queued`, `running`, `done`, `failed`), progress and outcome."""
        job = writer.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job '{job_id}'")
        return job.to_dict()

    @app.get("/jobs", dependencies=read, tags=["documents"])
    def jobs() -> list[dict[str, Any]]:
        """Recent jobs, newest first."""
        return [j.to_dict() for j in writer.jobs()[:50]]

    # ------------------------------------------------------------- health, page
    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness and what the index holds."""
        return {
            "status": "ok",
            "documents": len(index),
            "pages": index.num_pages(),
            "legs": list(index.legs),
            "skipped_legs": index.skipped_legs,
            "jobs_pending": writer.pending(),
            "auth": {"read": auth.read_key is not None, "admin": auth.admin_key is not None},
        }

    @app.get("/", include_in_schema=False)
    def home() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    _docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _docs(app: FastAPI) -> None:
    """``/docs`` and ``/redoc`` through FastAPI's own page builders, with the Swagger UI and
    ReDoc files that ``fastapi-offline`` bundles, mounted at ``/static/docs``."""
    assets = _docs_assets()
    app.mount("/static/docs", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} · API",
            redoc_js_url="/static/docs/redoc.standalone.js",
            redoc_favicon_url="/static/docs/favicon.png",
            with_google_fonts=False,
        )


def _docs_assets() -> Path:
    """The folder of Swagger UI's and ReDoc's files inside the ``fastapi-offline`` package."""
    try:
        import fastapi_offline
    except ImportError as e:
        from mm_retriever.errors import MissingExtraError

        raise MissingExtraError(
            "fastapi-offline", extra="serve", purpose="the API docs page"
        ) from e
    folder = Path(fastapi_offline.__file__).parent / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise MMRetrieverError(f"fastapi-offline has no Swagger UI files in {folder}")
    return folder


# ------------------------------------------------------------------ helpers

_CACHE = {"Cache-Control": "private, max-age=300"}


def page_json(page: Any, query: str, legs: list[str] | None = None) -> dict[str, Any]:
    """``RetrievedPage.to_dict()`` (what `search --json` prints) plus image and overlay URLs."""
    out = page.to_dict()
    base = f"/pages/{quote(page.doc_id)}/{page.page_index}"
    out["image_url"] = base
    params: list[tuple[str, str]] = [("q", query)] if query else []
    params += [("legs", leg) for leg in legs or []]
    out["overlay_url"] = f"{base}/overlay?{urlencode(params)}" if query else None
    out["explain_url"] = f"{base}/explain?{urlencode(params)}" if query else None
    out["citation"] = page.citation
    out["width"], out["height"] = page.width, page.height
    for fig in out["figures"]:
        fig["image_url"] = f"/figures/{quote(page.doc_id)}/{page.page_index}/{fig['figure_index']}"
    return out


def _page(index: Any, doc_id: str, page_index: int, columns: list[str]) -> dict[str, Any]:
    from mm_retriever.store import PAGES

    if not index.store.has_document(doc_id):
        raise HTTPException(404, f"no document with id '{doc_id}'")
    rows = index.store.rows_matching(PAGES, {"doc_id": doc_id, "page_index": page_index}, columns)
    if not rows:
        raise HTTPException(404, f"document '{doc_id}' has no page {page_index}")
    return rows[0]


def _legs(index: Any, legs: list[str] | None) -> list[str] | None:
    unknown = [n for n in legs or [] if n not in index.legs]
    if unknown:
        raise HTTPException(422, f"unknown leg(s) {unknown}; this index has {list(index.legs)}")
    return legs or None


def _check_query(q: str, settings: ServeSettings) -> None:
    check_query_text(q, settings.max_query_chars)


def _decode_image(data: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=True)
        check_image_bytes(len(raw))
        image = Image.open(io.BytesIO(raw))
        check_image_size(*image.size)  # before decoding: a decompression bomb stops here
        image.load()
    except InvalidQueryError:
        raise
    except (binascii.Error, ValueError) as e:
        raise HTTPException(422, "image must be base64 (or a data: URL) of a PNG/JPEG") from e
    except (UnidentifiedImageError, OSError) as e:
        raise HTTPException(422, "image is not a readable PNG/JPEG") from e
    return image.convert("RGB")


async def _save_upload(f: UploadFile, folder: Path, limit: int) -> tuple[str, Path]:
    """Store one upload under ``folder`` with a safe name; check its type and size."""
    from mm_retriever.ingest import SUPPORTED_SUFFIXES

    raw_name = Path((f.filename or "upload").replace("\\", "/")).name
    name = _SAFE_NAME.sub("_", raw_name).strip(" .") or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise HTTPException(
            415,
            f"'{raw_name}': unsupported file type; send {', '.join(sorted(SUPPORTED_SUFFIXES))}",
        )
    head = await f.read(8)
    if not head.startswith(_MAGIC.get(suffix, (b"",))):
        raise HTTPException(422, f"'{raw_name}' is not a {suffix[1:].upper()} file")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    n = 1
    while path.exists():
        path = folder / f"{Path(name).stem}-{n}{suffix}"
        n += 1
    size = len(head)
    with path.open("wb") as out:
        out.write(head)
        while chunk := await f.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"'{raw_name}' is larger than {limit} bytes")
            out.write(chunk)
    return raw_name, path


def _error_handlers(app: FastAPI) -> None:
    """Clear 4xx messages; never a stack trace to the client."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"detail": summary or "invalid request", "errors": errors}, 422)

    @app.exception_handler(InvalidQueryError)
    @app.exception_handler(EmptyQueryError)
    async def invalid_query(request: Request, exc: MMRetrieverError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)  # the same message as every surface

    @app.exception_handler(MMRetrieverError)
    async def domain(request: Request, exc: MMRetrieverError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 400)

    @app.exception_handler(LookupError)
    async def missing(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).strip("'\"")}, 404)

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see the server log"}, 500)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("mm-retriever")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "0"
