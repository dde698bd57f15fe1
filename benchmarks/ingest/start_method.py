"""Reader-pool speed by start method: loky (workers never import the caller's ``__main__``,
the default since issue 24) against the forkserver with this module preloaded (before).

    uv run --frozen python benchmarks/ingest/start_method.py --rounds 2 \
        --out benchmarks/ingest/results_start_method.json

Each round reads the same PDFs with ``read_documents(workers=N)`` once per method, each in a
new Python process (so the forkserver's one-off start is counted, as a first ``add`` pays it)
with a new empty ``MM_RETRIEVER_CACHE`` (no OCR cache hits). Reported: pages/s over the whole
read, and seconds to the first page (worker start-up).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "mmlongbench-dev" / "pdfs"
FILES = ["2303.08559v2.pdf", "0e94b4197b10096b1f4c699701570fbf.pdf", "watch_d.pdf"]


def _forkserver() -> multiprocessing.context.BaseContext:
    """The start method before issue 24: the forkserver with the pool module preloaded."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mm_retriever.ingest.pool"])
    return ctx


def read_once(method: str, files: list[Path], workers: int) -> dict:
    from mm_retriever.config import IngestConfig
    from mm_retriever.ingest import pool

    if method == "forkserver":
        pool._start_method = _forkserver  # type: ignore[assignment]
    t0 = time.perf_counter()
    first = None
    pages = 0
    for event in pool.read_documents(files, IngestConfig(), workers=workers):
        if isinstance(event, pool.Pages):
            first = first if first is not None else time.perf_counter() - t0
            pages += len(event.pages)
        elif isinstance(event, pool.Failed):
            raise SystemExit(f"{event.key}: {event.reason}")
    wall = time.perf_counter() - t0
    return {
        "method": method,
        "pages": pages,
        "seconds": round(wall, 2),
        "pages_per_s": round(pages / wall, 3),
        "first_page_s": round(first or 0.0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, JSON out
    args = ap.parse_args()
    files = [DEV / f for f in FILES]
    if args.one:
        print(json.dumps(read_once(args.one, files, args.workers)))
        return
    runs = []
    for r in range(args.rounds):
        for method in ("forkserver", "loky"):
            with tempfile.TemporaryDirectory() as cache:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", method, "--workers", str(args.workers)],
                    env={**os.environ, "MM_RETRIEVER_CACHE": cache},
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            run = {"round": r, **json.loads(out.strip().splitlines()[-1])}
            print(run, flush=True)
            runs.append(run)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    result = {
        "files": FILES,
        "workers": args.workers,
        "runs": runs,
        "machine": [ln for ln in lscpu.splitlines()[:20]],
        "load_average_after": os.getloadavg(),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
