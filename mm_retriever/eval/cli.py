"""``mm-retriever eval``: score pipelines on a data set, write the JSON results and a report."""

from __future__ import annotations

import json
import logging
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from mm_retriever.errors import MMRetrieverError, check_extra

console = Console(stderr=True)


def default_workdir() -> Path:
    cache = Path(os.environ.get("MM_RETRIEVER_CACHE", Path.home() / ".cache" / "mm-retriever"))
    return cache / "eval"


def load_hybrid_config(path: Path | None) -> tuple[Any, dict[str, Any]]:
    """(IndexConfig or None, retriever options) from a JSON file.

    The file holds either an ``IndexConfig`` (``{"ingest": ..., "legs": [...], "fusion": ...}``)
    or ``{"index": {IndexConfig}, "retriever": {"legs": [...], "fusion": "rrf", "weights": {...},
    "candidates": 50}}``.
    """
    if path is None:
        return None, {}
    from mm_retriever.config import IndexConfig

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MMRetrieverError(f"{path}: cannot read the config file ({exc})") from exc
    if "index" in data or "retriever" in data:
        index = IndexConfig.model_validate(data.get("index", {}))
        return index, dict(data.get("retriever", {}))
    return IndexConfig.model_validate(data), {}


def _parse_weights(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    out = {}
    for item in items:
        leg, sep, value = item.partition("=")
        try:
            out[leg.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise MMRetrieverError(f"--weight takes LEG=NUMBER, e.g. bm25=1.0, got {item!r}")
    return out


def merge_results(docs: list[dict[str, Any]], files: list[Path]) -> list[dict[str, Any]]:
    """Add the pipelines of earlier results files to ``docs`` (same data set, matching scope)."""
    for path in files:
        try:
            old = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MMRetrieverError(f"{path}: cannot read results ({exc})") from exc
        target = next((d for d in docs if d["scope"] == old.get("scope")), None)
        if target is None or old.get("dataset") != target["dataset"]:
            continue
        for name, res in old.get("pipelines", {}).items():
            target["pipelines"].setdefault(name, res)
    return docs


def machine_description() -> str:
    """A one-line description of this machine (CPU, cores, accelerator)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.system()} {platform.machine()}, {cpu}, {cores} cores, {gpu}"


#: what ``mm-retriever eval`` imports from the ``eval`` extra (module, package)
EVAL_PACKAGES = (
    ("ir_measures", "ir-measures"),
    ("scipy.stats", "scipy"),
    ("datasets", "datasets"),
    ("matplotlib", "matplotlib"),
)


def require_eval_extra() -> None:
    """MissingExtraError naming ``mm-retriever[eval]`` when a package of it is missing."""
    check_extra(EVAL_PACKAGES, "eval", "mm-retriever eval")


def eval_command(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            help="a folder (pdfs/, queries.jsonl, qrels.tsv), vidore:NAME or docvqa:NAME",
        ),
    ],
    pipeline: Annotated[
        list[str] | None,
        typer.Option(
            "--pipeline",
            "-p",
            help="page, text, bm25, hybrid, layer-bm25, ocr-bm25, ocr-dense, llamaindex, "
            "langchain (repeat for several; default hybrid)",
        ),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="within-doc or corpus (repeat for both; default within-doc)"),
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", help="results JSON (with two scopes: FILE.<scope>.json)"),
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="folder for report.md and PNG plots")
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="JSON: hybrid's IndexConfig and/or retriever options"),
    ] = None,
    legs: Annotated[
        str | None, typer.Option("--legs", help="hybrid: comma-separated legs to fuse")
    ] = None,
    fusion: Annotated[str | None, typer.Option("--fusion", help="hybrid: rrf or weighted")] = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="hybrid: LEG=W fusion weight (repeat)")
    ] = None,
    candidates: Annotated[
        int | None, typer.Option("--candidates", help="hybrid: hits per leg before fusion")
    ] = None,
    ocr_engine: Annotated[
        str | None, typer.Option("--ocr-engine", help="rapidocr or tesseract")
    ] = None,
    text_model: Annotated[
        str | None, typer.Option("--text-model", help="sentence-transformers model (id or path)")
    ] = None,
    page_model: Annotated[
        str | None, typer.Option("--page-model", help="ColPali-family model (id or path)")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps")] = "auto",
    workdir: Annotated[
        Path | None,
        typer.Option("--workdir", help="where indexes are kept and reused (default: cache)"),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="HF data set split")] = None,
    limit_queries: Annotated[
        int | None, typer.Option("--limit-queries", help="score only the first N queries")
    ] = None,
    limit_docs: Annotated[
        int | None, typer.Option("--limit-docs", help="index only the first N documents")
    ] = None,
    ocr_sample: Annotated[
        int, typer.Option("--ocr-sample", help="pages OCR'd (uncached) to time OCR s/page")
    ] = 3,
    merge: Annotated[
        list[Path] | None,
        typer.Option(
            "--merge",
            help="results JSON of an earlier run (same data set) whose pipelines join this "
            "report, matched by scope; this run's pipelines win on a name clash (repeat)",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Score retrieval pipelines (nDCG@5, Recall@5, MRR@10, per evidence type) on a data set."""
    try:
        require_eval_extra()
    except MMRetrieverError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    from mm_retriever.eval.datasets import load_dataset
    from mm_retriever.eval.pipelines import make_pipeline
    from mm_retriever.eval.report import write_json, write_report
    from mm_retriever.eval.runner import run

    logging.getLogger("mm_retriever").setLevel(logging.WARNING)
    try:
        data = load_dataset(dataset, split=split)
        if limit_queries or limit_docs:
            data = data.limit(limit_queries, limit_docs)
        scopes = scope or ["within-doc" if data.has_docs else "corpus"]
        hybrid_config, retriever = load_hybrid_config(config_file)
        if legs:
            retriever["legs"] = [s.strip() for s in legs.split(",") if s.strip()]
        if fusion:
            retriever["fusion"] = fusion
        weights = _parse_weights(weight)
        if weights:
            retriever["weights"] = weights
        if candidates:
            retriever["candidates"] = candidates
        names = pipeline or ["hybrid"]
        pipes = [
            make_pipeline(
                n,
                ocr_engine=ocr_engine,
                text_model=text_model,
                page_model=page_model,
                device=device,
                hybrid_config=hybrid_config,
                retriever=retriever if n == "hybrid" else None,
            )
            for n in names
        ]
        console.print(
            f"[bold]{data.name}[/bold]: {len(data.files)} documents, {len(data.queries)} queries, "
            f"{data.num_relevant} relevant pages; scopes {', '.join(scopes)}"
        )
        docs = run(
            data,
            pipes,
            scopes,  # type: ignore[arg-type]
            workdir or default_workdir(),
            progress=not quiet,
            ocr_sample=ocr_sample,
            on_event=lambda msg: console.print(msg, markup=False, highlight=False),
        )
    except MMRetrieverError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    try:
        docs = merge_results(docs, merge or [])
    except MMRetrieverError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for doc in docs:
        doc_meta = {"date": stamp, "machine": machine_description()}
        doc.setdefault("meta", doc_meta)
    if json_file:
        for doc in docs:
            path = json_file
            if len(docs) > 1:
                path = json_file.with_name(f"{json_file.stem}.{doc['scope']}{json_file.suffix}")
            write_json(doc, path)
            console.print(f"wrote {path}")
    if report_dir:
        header = f"Evaluation on {data.name} — {stamp} — {machine_description()}"
        md = write_report(docs, report_dir, header=f"# {header}\n")
        console.print(f"wrote {md}")
    from mm_retriever.eval.report import markdown_table

    typer.echo(markdown_table(docs))


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command(name="eval")(eval_command)
