"""Command line: ``mm-retriever index | search | info | delete | demo | eval | serve | mcp``."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

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
)
console = Console()
err_console = Console(stderr=True)

SAMPLE_QUESTIONS = [
    "Which region installed the most solar capacity between 2020 and 2024?",
    "What did a TOPCon module cost per watt in 2024?",
    "How much rain fell in March at Harbour Point?",
]

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="index folder or URI")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )
    logging.getLogger("mm_retriever").setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "huggingface_hub", "filelock", "RapidOCR"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _build_config(
    config_file: Path | None,
    ocr: str | None,
    ocr_engine: str | None,
    dpi: int | None,
    device: str | None,
    text_model: str | None,
    page_model: str | None,
    figure_model: str | None,
    legs: list[str] | None,
) -> IndexConfig:
    """An IndexConfig from an optional JSON/TOML/YAML-free JSON file plus command-line overrides."""
    from mm_retriever.config import IndexConfig

    data: dict[str, Any] = json.loads(config_file.read_text()) if config_file else {}
    config = IndexConfig.model_validate(data)
    ingest = config.ingest
    if ocr:
        ingest.ocr = ocr  # type: ignore[assignment]
    if ocr_engine:
        ingest.ocr_engine = ocr_engine  # type: ignore[assignment]
    if dpi:
        ingest.dpi = dpi
    if device:
        config.device = device
    if legs:
        config.legs = [spec for spec in config.legs if spec.leg_name in legs]
    for spec in config.legs:
        for key in ("encoder", "text_encoder", "image_encoder"):
            enc = spec.options.get(key)
            if not isinstance(enc, dict):
                continue
            options = enc.setdefault("options", {})
            if text_model and enc.get("name") == "sentence-transformers":
                options["model"] = text_model
            if page_model and enc.get("name") == "colpali":
                options["model"] = page_model
            if figure_model and enc.get("name") in ("clip", "siglip"):
                options["model"] = figure_model
    return config


def _open_or_create(index: Path, config: IndexConfig) -> MultimodalIndex:
    from mm_retriever.index import MultimodalIndex

    if MultimodalIndex.exists(index):
        return MultimodalIndex.open(index, device=config.device)
    return MultimodalIndex.create(index, config)


def _results_table(question: str, pages: list[RetrievedPage], legs: list[str]) -> Table:
    table = Table(title=f"[bold]{question}[/bold]", title_justify="left")
    # the number columns keep their width; document and text share what the terminal has left
    # (6 columns: 19 characters of borders and padding, 32 of numbers and leg ranks)
    room = max(16, console.width - 51)
    doc_width = max(8, min(28, room // 3))
    text_width = max(8, min(48, room - doc_width))
    table.add_column("#", justify="right", no_wrap=True, min_width=2)
    table.add_column("p.", justify="right", no_wrap=True, min_width=3)
    table.add_column("document", no_wrap=True, overflow="ellipsis", width=doc_width)
    table.add_column("fused", justify="right", no_wrap=True, min_width=7)
    table.add_column("leg: rank (score)", no_wrap=True, min_width=18)
    table.add_column("text", no_wrap=True, overflow="ellipsis", width=text_width)
    for n, page in enumerate(pages, 1):
        per_leg = [
            f"{leg}: {page.leg_ranks[leg]} ({page.leg_scores[leg]:.3g})"
            for leg in legs
            if leg in page.leg_ranks and leg in page.leg_scores
        ]
        snippet = " ".join((page.matched_text or page.text).split())
        table.add_row(
            str(n),
            str(page.page_number),
            Path(page.source).name,
            f"{page.score:.3f}",
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
    dpi: Annotated[int | None, typer.Option(help="page render resolution")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    text_model: Annotated[str | None, typer.Option(help="sentence-transformers model")] = None,
    page_model: Annotated[str | None, typer.Option(help="ColPali-family model")] = None,
    figure_model: Annotated[str | None, typer.Option(help="CLIP/SigLIP model")] = None,
    leg: Annotated[list[str] | None, typer.Option(help="legs to build (repeat)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Index documents (new index, or add to an existing one)."""
    _setup_logging(verbose)
    config = _build_config(
        config_file, ocr, ocr_engine, dpi, device, text_model, page_model, figure_model, leg
    )
    idx = _open_or_create(index, config)
    report = idx.add(paths, progress=True)
    console.print(
        f"indexed {len(report.added)} document(s), {report.pages} page(s) "
        f"in {report.seconds:.1f} s; "
        f"{len(report.unchanged)} unchanged; {len(report.failed)} failed; "
        f"index now holds {len(idx.documents())} document(s), {idx.num_pages()} page(s)"
    )
    for path, reason in report.failed.items():
        err_console.print(f"[red]failed:[/red] {path}: {reason}")
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
        bool, typer.Option("--raw-query", help="keep answer-format instructions in the query")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search an index and print the top pages with per-leg ranks and scores."""
    from mm_retriever.errors import MMRetrieverError
    from mm_retriever.index import MultimodalIndex

    _setup_logging(verbose)
    if not MultimodalIndex.exists(index):
        raise _fail(f"no index at {index}; build one: mm-retriever index PATH --index {index}")
    idx = MultimodalIndex.open(index, device=device)
    retriever = idx.retriever(fusion=fusion, legs=leg, clean_query=not raw_query)
    filters = {"doc_id": doc_id} if doc_id else None
    try:
        pages = retriever.retrieve(question, k=k, filters=filters)
    except MMRetrieverError as e:
        raise _fail(str(e)) from None
    if as_json:
        sys.stdout.write(json.dumps([p.to_dict() for p in pages], indent=2) + "\n")
        return
    console.print(_results_table(question, pages, retriever.leg_names))


@app.command()
def info(index: IndexOpt) -> None:
    """Show an index's legs, models and documents."""
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(index):
        raise _fail(f"no index at {index}")
    idx = MultimodalIndex.open(index)
    console.print_json(idx.config.model_dump_json())
    table = Table("doc_id", "pages", "source")
    for doc in idx.documents():
        table.add_row(doc["doc_id"], str(doc["n_pages"]), doc["source"])
    console.print(table)


@app.command()
def delete(
    doc_ids: Annotated[list[str], typer.Argument(help="document ids (see `info`)")],
    index: IndexOpt,
) -> None:
    """Delete documents from an index, in every table."""
    from mm_retriever.index import MultimodalIndex

    if not MultimodalIndex.exists(index):
        raise _fail(f"no index at {index}")
    idx = MultimodalIndex.open(index)
    for doc_id in doc_ids:
        idx.delete(doc_id)
    console.print(f"deleted {len(doc_ids)} document(s)")


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
    with tempfile.TemporaryDirectory(prefix="mm-retriever-demo-") as tmp:
        where = index or Path(tmp) / "index"
        console.print(f"[bold]Indexing[/bold] {folder} -> {where}")
        idx = MultimodalIndex.create(where, IndexConfig(), overwrite=True)
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
    try:
        from mm_retriever.serve import ServeSettings, run

        options: dict[str, Any] = {"workers": workers} if workers else {}
        settings = ServeSettings(
            index=str(index),
            device=device,
            read_key=read_key,
            admin_key=admin_key,
            max_upload_mb=max_upload_mb,
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
) -> None:
    """Run an MCP server (stdio) with a search tool over an index, for agent hosts."""
    from mm_retriever.errors import MMRetrieverError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    try:
        from mm_retriever.mcp_server import run_stdio

        run_stdio(index, device=device, default_k=k)
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
