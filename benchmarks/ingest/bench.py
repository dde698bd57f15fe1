"""Ingestion speed from scratch: reading in this process (workers=1) vs a process pool
(workers=N), with the per-stage split; and rendering alone, PyMuPDF vs pdf2image (poppler).

    uv run --frozen python benchmarks/ingest/bench.py             # the full dev set
    uv run --frozen python benchmarks/ingest/bench.py --subset 8 \
        --out benchmarks/ingest/results_subset8.json              # 8 stated documents

Every index is built with the default settings (``IndexConfig()``: the legs whose models exist
here, rapidocr, ocr="auto") into a new folder, with a new empty ``MM_RETRIEVER_CACHE`` (no OCR
cache hits: from scratch). Model loading (``MultimodalIndex.create``) is timed apart from
``add``. Stage seconds of the readers are summed over the reader processes (with N workers they
add up to more than the wall time); ``ingest`` is the time the writer waited for pages;
``cpu_seconds`` is CPU time of the writing process plus ``reader_cpu`` (the reader processes'),
a measure of work that a loaded box inflates much less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "mmlongbench-dev" / "pdfs"
# a stated subset of the dev set: slides (mostly OCR), reports, a paper, manuals, a brochure
SUBSET = [
    "b3m5kaeqm2w8n4bwcesw-140602121350-phpapp02_95.pdf",
    "avalaunchpresentationsthatkickasteriskv3copy-150318114804-conversion-gate01_95.pdf",
    "2303.08559v2.pdf",
    "PG_2020.03.09_US-Germany_FINAL.pdf",
    "honor_watch_gs_pro.pdf",
    "GPL-Graduate-Studies-Professional-Learning-Brochure-Jul-2021.pdf",
    "0e94b4197b10096b1f4c699701570fbf.pdf",
    "watch_d.pdf",
]


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), ""
        )
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
    }


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


# Settings to run beside today's defaults, as (ingest options, text encoder options):
# "onnxruntime": the defaults with rapidocr on ONNX Runtime (the default before OpenVINO);
# "previous": the defaults before issue 9's OCR / encoder changes (2026-11-30): whole-page OCR
# for raster figures, rapidocr's detector on the full image, ONNX Runtime, float32 encoders.
SETTINGS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "onnxruntime": ({"ocr_runtime": "onnxruntime"}, {}),
    "previous": (
        {"ocr_max_side": 0, "ocr_figure_crops": False, "ocr_runtime": "onnxruntime"},
        {"dtype": "float32"},
    ),
}


def _text_encoders(config) -> list[dict]:
    """The option dicts of the sentence-transformers encoders of ``config``'s legs."""
    specs = []
    for leg in config.legs:
        for key in ("encoder", "text_encoder"):
            spec = leg.options.get(key)
            if isinstance(spec, dict) and spec.get("name") == "sentence-transformers":
                specs.append(spec.setdefault("options", {}))
    return specs


def build(
    files: list[Path], workers: int, work: Path, text_backend: str | None, settings: str
) -> dict:
    """Index ``files`` into a new index with a new cache; returns seconds, pages/s, stages.
    ``settings``: a key of ``SETTINGS`` ("default": ``IndexConfig()``)."""
    from mm_retriever.config import IndexConfig
    from mm_retriever.index import MultimodalIndex

    name = f"w{workers}-{text_backend or 'default'}-{settings}"
    os.environ["MM_RETRIEVER_CACHE"] = str(work / f"cache-{name}")
    config = IndexConfig()
    ingest_update, encoder_update = SETTINGS[settings]
    config.ingest = config.ingest.model_copy(update=ingest_update)
    for options in _text_encoders(config):
        options.update(encoder_update)
    if text_backend:  # the text leg's and the figure leg's text encoder
        for options in _text_encoders(config):
            options["backend"] = text_backend
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    index = MultimodalIndex.create(work / f"index-{name}", config)
    create_s = time.perf_counter() - t0
    t0, cpu0 = time.perf_counter(), time.process_time()
    report = index.add(files, workers=workers)
    seconds = time.perf_counter() - t0
    # CPU seconds: this process (all its threads) plus what the reader processes report
    cpu = time.process_time() - cpu0 + report.timings.get("reader_cpu", 0.0)
    return {
        "settings": settings,
        "ingest": config.ingest.model_dump(),
        "workers": workers,
        "text_backend": text_backend or "default",
        "legs": list(index.legs),
        "documents": len(report.added),
        "failed": report.failed,
        "pages": report.pages,
        "add_seconds": round(seconds, 1),
        "pages_per_second": round(report.pages / seconds, 3),
        "seconds_per_page": round(seconds / max(1, report.pages), 3),
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_per_page": round(cpu / max(1, report.pages), 3),
        "model_load_seconds": round(create_s, 1),
        "stages_seconds": {k: round(v, 1) for k, v in sorted(report.timings.items())},
        "load_average_before": round(load, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def render_only(files: list[Path], dpi: int) -> dict:
    """Render every page at ``dpi`` with PyMuPDF and with pdf2image, document by document
    (alternating, so both see the same load). One process each."""
    import pymupdf

    from mm_retriever.ingest.render import render_page, render_pdf2image

    seconds = {"pymupdf": 0.0, "pdf2image": 0.0}
    cpu = {"pymupdf": 0.0, "pdf2image": 0.0}  # pdf2image: pdftoppm (a child) + this process
    pages = 0
    for path in files:
        with pymupdf.open(path) as doc:
            n = doc.page_count
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(n):
                render_page(doc.load_page(i), dpi)
            seconds["pymupdf"] += time.perf_counter() - t0
            cpu["pymupdf"] += time.process_time() - c0
        t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        images = render_pdf2image(path, 0, n - 1, dpi)
        seconds["pdf2image"] += time.perf_counter() - t0
        cpu["pdf2image"] += time.process_time() - c0 + _children_cpu() - k0
        assert len(images) == n
        pages += n
    return {
        "dpi": dpi,
        "pages": pages,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "pages_per_second": {k: round(pages / v, 2) for k, v in seconds.items()},
        "pymupdf_speedup": round(seconds["pdf2image"] / seconds["pymupdf"], 2),
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        "pymupdf_speedup_cpu": round(cpu["pdf2image"] / cpu["pymupdf"], 2),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdfs", type=Path, default=DEV, help="folder of PDFs (default: dev set)")
    ap.add_argument("--subset", type=int, default=0, help="only the first N of SUBSET (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the 'after' run")
    ap.add_argument(
        "--text-backend",
        action="append",
        default=None,
        help="text encoder backend(s) for the pool run (torch, onnx); repeat",
    )
    ap.add_argument(
        "--settings",
        action="append",
        choices=list(SETTINGS),
        default=None,
        help="index settings of the pool run(s): default (IndexConfig()), onnxruntime (rapidocr "
        "on ONNX Runtime) and/or previous (the defaults before 2026-11-30: whole-page figure "
        "OCR, full-size OCR detection, ONNX Runtime, float32 encoders); repeat; default: default",
    )
    ap.add_argument("--skip-before", action="store_true", help="no workers=1 run")
    ap.add_argument("--skip-render", action="store_true", help="no render-only comparison")
    ap.add_argument("--render-only", action="store_true", help="only the render comparison")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = ap.parse_args()

    if args.subset:
        files = [args.pdfs / name for name in SUBSET[: args.subset]]
    else:
        files = sorted(args.pdfs.glob("*.pdf"))
    result: dict = {
        "command": " ".join(["uv run --frozen python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": machine(),
        "files": [f.name for f in files],
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="mm-ingest-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_render:
            result["render_only"] = render_only(files, dpi=144)
            print(json.dumps(result["render_only"]), flush=True)
        runs = [] if args.skip_before or args.render_only else [(1, None, "default")]
        if not args.render_only:
            runs += [
                (args.workers, b, s)
                for s in (args.settings or ["default"])
                for b in (args.text_backend or [None])
            ]
        for workers, backend, settings in runs:
            run = build(files, workers, work, backend, settings)
            print(json.dumps(run), flush=True)
            result["runs"].append(run)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
