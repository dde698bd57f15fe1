"""Helpers for the reliability tests and benchmarks/reliability: real writer processes, real
LanceDB on disk, documents from tests/pdfgen.py.

The writer subprocess is ``tests/reliability_worker.py``; ``MM_RETRIEVER_CRASH_AT`` makes it
SIGKILL itself at a named point of the write path (``mm_retriever.faults``).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pdfgen import make_mixed_pdf, make_sample_pdf

from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.faults import ENV as CRASH_ENV
from mm_retriever.index import MultimodalIndex
from mm_retriever.store.schema import BASE_SCHEMAS

WORKER = Path(__file__).with_name("reliability_worker.py")

#: crash points of an add of three new documents (the third has figures), with how many times
#: each is reached (read in the writing process: MM_RETRIEVER_WORKERS=1; the three documents'
#: pages are encoded and written together); and of a delete
ADD_POINTS = {
    "read:open": 3,
    "write:marked": 3,
    "read:pages": 3,
    "encode:bm25": 1,
    "write:pages": 1,
    "write:figures": 1,
    "write:leg_bm25": 1,
    "write:document_text": 3,
    "write:documents": 3,
    "commit:marker": 3,
    "commit:done": 3,
    "after:optimize": 1,
    "after:manifest": 1,
}
DELETE_POINTS = {"delete:marked": 1, "delete:uncommitted": 1, "delete:rows": 1}
#: crash points of creating a BM25 index (``bm25_config``): the creation marker, each of its
#: tables (the base tables but the manifest, and leg_bm25), the manifest
CREATE_POINTS = {"create:marked": 1, "create:table": len(BASE_SCHEMAS), "create:manifest": 1}


def all_points(points: dict[str, int]) -> list[str]:
    return [f"{name}#{n}" for name, count in points.items() for n in range(1, count + 1)]


def bm25_config(*extra: LegSpec) -> IndexConfig:
    """BM25 leg only (fast to start in a subprocess), no OCR, 72 dpi; plus ``extra`` legs."""
    return IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=[LegSpec(name="bm25", options={"unit": "chunk"}), *extra],
        device="cpu",
    )


def make_docs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` small PDFs (1-3 pages of unique facts); every third one is the 5-page mixed PDF
    with figures (made unique by a fact page)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        facts = [
            f"Document {i} fact {j}: the {rng.choice(ANIMALS)} of {rng.choice(PLACES)} "
            f"counted {rng.randint(10, 99999)} {rng.choice(THINGS)} in {1900 + i}."
            for j in range(rng.randint(1, 3))
        ]
        path = folder / f"doc{i:03d}.pdf"
        if i % 3 == 2:
            make_mixed_pdf(path)
            _append_fact_page(path, facts[0])
        else:
            make_sample_pdf(path, facts, title=f"Document {i}")
        out.append(path)
    return out


ANIMALS = ["heron", "otter", "lynx", "marten", "ibis", "vole", "tern", "newt"]
PLACES = ["Quillon", "Harbour Point", "Kestrelmoor", "Umbergate", "Tarragant", "Zorblax"]
THINGS = ["lanterns", "boats", "bridges", "wells", "orchards", "mills", "kilns"]


def _append_fact_page(path: Path, fact: str) -> None:
    import pymupdf

    with pymupdf.open(path) as doc:
        page = doc.new_page()
        page.insert_text((72, 100), fact, fontsize=11)
        doc.saveIncr()


def run_worker(
    index: Path, *args: str, crash_at: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``reliability_worker.py INDEX ARGS...`` in a fresh Python process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["MM_RETRIEVER_WORKERS"] = "1"  # the crash points are in the writing process
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, str(WORKER), str(index), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_worker(index: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["MM_RETRIEVER_WORKERS"] = "1"  # the crash points are in the writing process
    env.pop(CRASH_ENV, None)
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(index), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines a worker printed."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _comparable(table: pa.Table) -> list[tuple]:
    keep = [
        name
        for name, typ in zip(table.schema.names, table.schema.types, strict=True)
        if (pa.types.is_string(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ))
        and name not in ("added_at", "started_at")
    ]
    rows = table.select(keep).to_pylist()
    return sorted(tuple(r[c] for c in keep) for r in rows)


def row_sets(index: MultimodalIndex) -> dict[str, list[tuple]]:
    """Every per-document table's rows (text and number columns), sorted, plus binary sizes."""
    out = {}
    for name in index.store.doc_tables():
        out[name] = _comparable(index.store.query(name))
    return out


def rows_of(index: MultimodalIndex, doc_ids: Sequence[str]) -> dict[str, list[tuple]]:
    """``row_sets`` restricted to the given documents."""
    wanted = set(doc_ids)
    out = {}
    for name, rows in row_sets(index).items():
        out[name] = [r for r in rows if r[0] in wanted]
    return out


def assert_consistent(index: MultimodalIndex, reference: dict[str, list[tuple]]) -> set[str]:
    """Every committed document has exactly its clean-build rows; returns the committed ids.

    ``reference``: ``row_sets`` of a clean build holding (at least) every document that may be
    committed here.
    """
    committed = index.store.document_ids()
    docs = index.store.query("documents").column("doc_id").to_pylist()
    assert len(docs) == len(set(docs)), f"duplicate documents rows: {docs}"
    mine = rows_of(index, sorted(committed))
    for name, rows in reference.items():
        want = [r for r in rows if r[0] in committed]
        assert mine.get(name, []) == want, f"table {name}: rows of committed documents differ"
    return committed


MUTATIONS = ("truncate", "flip", "cut", "duplicate", "garbage", "zero", "xref")


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One seeded mutation of a file's bytes: (kind, new bytes)."""
    kind = rng.choice(MUTATIONS)
    n = len(data)
    at = rng.randrange(n)
    if kind == "truncate":
        return kind, data[:at]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 64)):
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        return kind, bytes(out)
    span = rng.randint(1, max(1, n // 8))
    if kind == "cut":
        return kind, data[:at] + data[at + span :]
    if kind == "duplicate":
        return kind, data[:at] + data[at : at + span] * 2 + data[at + span :]
    if kind == "garbage":
        return kind, data[:at] + rng.randbytes(span) + data[at:]
    if kind == "zero":
        return kind, data[:at] + bytes(min(span, n - at)) + data[at + span :]
    # xref: point startxref somewhere else
    i = data.rfind(b"startxref")
    if i < 0:
        return kind, data[:at]
    return kind, data[: i + 10] + str(rng.randrange(n)).encode() + b"\n%%EOF\n"


def fuzz_files(sources: Sequence[Path], folder: Path, n: int, seed: int) -> dict[Path, str]:
    """``n`` mutated copies of ``sources`` in ``folder``: path -> mutation kind."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    blobs = [p.read_bytes() for p in sources]
    out = {}
    for i in range(n):
        kind, data = mutate(rng.choice(blobs), rng)
        path = folder / f"fuzz{i:04d}_{kind}.pdf"
        path.write_bytes(data)
        out[path] = kind
    return out


def assert_fuzz_outcome(index: MultimodalIndex, files: Sequence[Path], report: Any) -> None:
    """Every file indexed, unchanged or reported; the index is consistent and searchable."""
    accounted = set(report.added) | set(report.unchanged) | set(report.failed)
    assert accounted == {str(p) for p in files}
    assert all(reason for reason in report.failed.values())
    assert index.check() == []
    docs = index.documents()
    assert len(docs) == len({d["doc_id"] for d in docs})
    pages = index.store.query("pages", columns=["doc_id"]).column("doc_id").to_pylist()
    for d in docs:
        assert pages.count(d["doc_id"]) == d["n_pages"], d["source"]
