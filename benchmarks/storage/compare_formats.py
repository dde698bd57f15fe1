"""Ways to store page images, compared on a data set: bytes per page and encode/render time.

    uv run --frozen python benchmarks/storage/compare_formats.py [--pdfs DIR] [--per-doc 3] \
        [--json OUT.json]

Samples ``--per-doc`` random pages of every PDF (seed 0), renders them with PyMuPDF at 144, 110
and 96 dpi and encodes each render as JPEG and WebP at a few qualities (Pillow's default WebP
method 4). The source-file option is the PDFs' bytes divided by their pages (every page), and
its on-demand cost is the 144 dpi render plus a JPEG q85 encode.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
from pathlib import Path

import pymupdf
from PIL import Image

VARIANTS = [
    (144, "jpeg", 85),  # what schema 1 stored (IngestConfig defaults)
    (144, "jpeg", 70),
    (144, "webp", 80),
    (144, "webp", 70),
    (110, "jpeg", 70),
    (110, "webp", 80),
    (110, "webp", 70),
    (96, "jpeg", 70),
    (96, "webp", 80),
    (96, "webp", 70),
]


def _encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "WEBP" if fmt == "webp" else "JPEG", quality=quality)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdfs", type=Path, default=Path("../shared/data/mmlongbench-dev/pdfs"))
    ap.add_argument("--per-doc", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rng = random.Random(0)
    pdfs = sorted(args.pdfs.glob("*.pdf"))
    n_pages = sum(pymupdf.open(p).page_count for p in pdfs)
    sizes: dict[tuple[int, str, int], list[int]] = {v: [] for v in VARIANTS}
    encode_s: dict[tuple[int, str, int], list[float]] = {v: [] for v in VARIANTS}
    render_s: dict[int, list[float]] = {}
    sampled = 0
    for path in pdfs:
        doc = pymupdf.open(path)
        for index in rng.sample(range(doc.page_count), min(args.per_doc, doc.page_count)):
            page = doc.load_page(index)
            sampled += 1
            for dpi in sorted({v[0] for v in VARIANTS}, reverse=True):
                t = time.perf_counter()
                pix = page.get_pixmap(dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
                image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
                render_s.setdefault(dpi, []).append(time.perf_counter() - t)
                for variant in (v for v in VARIANTS if v[0] == dpi):
                    t = time.perf_counter()
                    data = _encode(image, variant[1], variant[2])
                    encode_s[variant].append(time.perf_counter() - t)
                    sizes[variant].append(len(data))
    pdf_bytes = sum(p.stat().st_size for p in pdfs)
    out = {
        "pdfs": len(pdfs),
        "pages": n_pages,
        "sampled_pages": sampled,
        "source_pdf_bytes_per_page": round(pdf_bytes / n_pages),
        "render_ms_p50": {d: round(1000 * statistics.median(v), 1) for d, v in render_s.items()},
        "encoded": [
            {
                "dpi": v[0],
                "format": v[1],
                "quality": v[2],
                "bytes_per_page_mean": round(statistics.fmean(sizes[v])),
                "encode_ms_p50": round(1000 * statistics.median(encode_s[v]), 1),
            }
            for v in VARIANTS
        ],
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
