"""Reliability under crashes and concurrency: real writer processes, real LanceDB on disk.

- kill -9 of a writer at seeded points of an add and of a delete: no half document is ever
  visible, a re-run completes, row sets equal a clean build;
- concurrent writers over the same and different files, several rounds: no loss, no duplicate;
- a writer plus searching readers: readers never fail and never return a deleted page;
- a missing or damaged table: a clear error and nothing deleted; readers never write;
- kill -9 while creating a new index: `index` and `repair` reset what it left, nothing else.

The larger version (every crash point, more rounds, MiniLM legs) is
``benchmarks/reliability/run.py``.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from reliability_harness import (
    ADD_POINTS,
    CREATE_POINTS,
    DELETE_POINTS,
    all_points,
    assert_consistent,
    bm25_config,
    events,
    make_docs,
    row_sets,
    run_worker,
    start_worker,
)

from mm_retriever.errors import IndexCorruptError, WriterBusyError
from mm_retriever.index import MultimodalIndex
from mm_retriever.store import LanceDBStore

KILLS = 20  # seeded crash points per CI run (the benchmark runs all of them)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Five documents; a base index with the first two; clean builds for the outcomes."""
    root = tmp_path_factory.mktemp("reliability")
    docs = make_docs(root / "docs", 5, seed=11)
    base = root / "base"
    index = MultimodalIndex.create(base, bm25_config())
    index.add(docs[:2])
    clean_all = MultimodalIndex.create(root / "clean_all", bm25_config())
    clean_all.add(docs)
    clean_rest = MultimodalIndex.create(root / "clean_rest", bm25_config())
    clean_rest.add(docs[1:2])
    ids = [
        clean_all.store.query("documents", f"source = '{d.resolve()}'")["doc_id"][0].as_py()
        for d in docs
    ]
    return {
        "root": root,
        "docs": docs,
        "ids": ids,
        "base": base,
        "all": row_sets(clean_all),
        "rest": row_sets(clean_rest),
    }


def test_kill_9_at_seeded_points_loses_nothing(corpus, tmp_path) -> None:
    rng = random.Random(20261129)
    points = rng.sample(all_points(ADD_POINTS), KILLS - 3) + all_points(DELETE_POINTS)
    docs, ids = corpus["docs"], corpus["ids"]

    def crash(point: str) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
        idx = tmp_path / point.replace(":", "_").replace("#", "_")
        shutil.copytree(corpus["base"], idx)
        if point.startswith("delete:"):
            result = run_worker(idx, "delete", ids[0], crash_at=point)
        else:
            result = run_worker(idx, "add", *map(str, docs[2:]), crash_at=point)
        return point, idx, result

    with ThreadPoolExecutor(2) as pool:
        crashed = list(pool.map(crash, points))
    for point, idx, result in crashed:
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        index = MultimodalIndex.open(idx)
        deleting = point.startswith("delete:")
        reference = corpus["all"]
        committed = assert_consistent(index, reference)  # no half document visible
        if deleting:
            assert committed in ({ids[0], ids[1]}, {ids[1]}), point
        else:
            assert {ids[0], ids[1]} <= committed <= set(ids), point
        for page in index.retriever().retrieve("Document fact counted", k=20):
            assert page.doc_id in committed, point
        # the re-run completes and leaves exactly what a clean build holds
        if deleting:
            index.delete(ids[0])  # the re-run of the interrupted delete
            assert row_sets(index) == corpus["rest"], point
        else:
            report = index.add(docs[2:])
            assert not report.failed and row_sets(index) == reference, point
        assert index.store.pending() == [] and index.check() == [], point


def test_concurrent_writers_same_and_different_files(corpus, tmp_path) -> None:
    docs, ids = corpus["docs"], corpus["ids"]
    idx = tmp_path / "idx"
    MultimodalIndex.create(idx, bm25_config())
    shared = [str(d) for d in docs[:2]]
    # three writers, three rounds each: every round adds the shared files and the writer's own
    # file, and deletes its own file of the round before
    plans = []
    for w in range(3):
        own = str(docs[2 + w])
        rounds = [
            {"add": [*shared, own]},
            {"add": [own, shared[1]], "delete": [ids[2 + w]]},
            {"add": [*reversed(shared), own]},
        ]
        plans.append(rounds)
    procs = [start_worker(idx, "rounds", json.dumps(p)) for p in plans]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert all(not e.get("failed") for e in events(out))
    index = MultimodalIndex.open(idx)
    assert_consistent(index, corpus["all"])
    assert row_sets(index) == corpus["all"]  # every document once, nothing lost
    assert index.check() == []


def test_writer_and_searching_readers(corpus, tmp_path) -> None:
    docs, ids = corpus["docs"], corpus["ids"]
    idx = tmp_path / "idx"
    index = MultimodalIndex.create(idx, bm25_config())
    index.add(docs[:1])
    # rows that were never committed and that no marker explains: never shown, never removed
    ghost = {
        "doc_id": "feedfacefeedface",
        "page_index": 0,
        "chunk_index": 0,
        "text": "Document fact counted heron lanterns ghost",
    }
    index.store.add("leg_bm25", [ghost], index.legs["bm25"].schema())
    rounds = [
        {"add": [str(d) for d in docs[1:]]},
        {"delete": ids[1:3]},
        {"add": [str(d) for d in docs[1:3]]},
        {"delete": ids[1:]},
    ]
    writer = start_worker(idx, "rounds", json.dumps(rounds))
    reader = MultimodalIndex.open(idx).retriever()  # opened before the writes: must follow
    seen: list[tuple[float, float, list[str]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            t0 = time.time()
            try:
                pages = reader.retrieve("Document fact counted heron lanterns", k=10)
            except BaseException as exc:
                errors.append(exc)
                return
            seen.append((t0, time.time(), [p.doc_id for p in pages]))

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        out, err = writer.communicate(timeout=600)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert writer.returncode == 0, err[-2000:]
    assert not errors, errors
    deleted_at: dict[str, float] = {}
    for e in events(out):
        if e["event"] == "deleted":
            deleted_at[e["doc_id"]] = e["t"]  # the last delete of each document counts
    assert len(seen) > 5
    final = reader.retrieve("Document fact counted heron lanterns", k=10)
    assert {p.doc_id for p in final} == {ids[0]}  # followed every add and delete
    for t0, _, found in seen:
        assert ghost["doc_id"] not in found
        assert set(found) <= set(ids)
        for doc_id in found:  # each document's last delete: it never shows after that
            assert t0 < deleted_at.get(doc_id, float("inf")), "a deleted page was returned"
    assert index.store.orphan_ids() == {ghost["doc_id"]}


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


def test_readers_never_write(corpus, tmp_path) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(corpus["base"], idx)
    ghost = {"doc_id": "0badc0de0badc0de", "page_index": 0, "chunk_index": 0, "text": "x"}
    MultimodalIndex.open(idx).store.add("leg_bm25", [ghost], None)
    (idx / ".writer.lock").unlink(missing_ok=True)
    before = _tree(idx)
    index = MultimodalIndex.open(idx)
    assert index.retriever().retrieve("Document fact", k=3)[0].image_path  # cached outside
    index.documents(), index.num_pages(), index.check()
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    assert CliRunner().invoke(app, ["info", "--index", str(idx)]).exit_code == 0
    assert _tree(idx) == before


def test_read_only_mount_opens_and_searches(corpus, tmp_path) -> None:
    src, ro = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(corpus["base"], src)
    ro.mkdir()
    if (
        subprocess.run(
            ["mount", "--bind", "-o", "ro", str(src), str(ro)], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip(
            "cannot bind-mount read-only here (needs root); covered by test_readers_never_write"
        )
    try:
        index = MultimodalIndex.open(ro)
        pages = index.retriever().retrieve("Document fact counted", k=3)
        assert pages and all(p.image_bytes for p in pages)
        from mm_retriever.errors import IndexReadOnlyError

        with pytest.raises(IndexReadOnlyError, match="can still be opened and searched"):
            index.delete(corpus["ids"][0])
    finally:
        subprocess.run(["umount", str(ro)], check=False)


@pytest.mark.parametrize("damage", ["documents", "pages", "leg_bm25", "manifest-json"])
def test_missing_or_damaged_table_is_an_error_and_deletes_nothing(corpus, tmp_path, damage):
    import lancedb

    idx = tmp_path / "idx"
    shutil.copytree(corpus["base"], idx)
    if damage == "manifest-json":
        db = lancedb.connect(idx)
        db.open_table("manifest").update(where="key = 'config'", values={"value": "{not json"})
        table = "manifest"
    else:
        shutil.rmtree(idx / f"{damage}.lance")
        table = damage
    before = _tree(idx)
    with pytest.raises(IndexCorruptError, match=f"table '{table}'.*Nothing was changed"):
        MultimodalIndex.open(idx)
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    for cmd in (["info"], ["search", "fact"], ["doctor"], ["index", str(corpus["docs"][3])]):
        result = CliRunner().invoke(app, [*cmd, "--index", str(idx)])
        assert (result.exit_code != 0 and result.exception is None) or isinstance(
            result.exception, SystemExit
        ), (cmd, result.output)
        assert "damaged" in result.output and "Traceback" not in result.output, result.output
    assert _tree(idx) == before


def test_unreadable_data_file_is_reported_by_doctor(corpus, tmp_path) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(corpus["base"], idx)
    for f in (idx / "pages.lance" / "data").iterdir():
        f.unlink()
    index = MultimodalIndex.open(idx)  # opening reads no data
    problems = index.check()
    assert any("table 'pages' is unreadable" in p for p in problems), problems
    assert index.store.count("documents") == 2


def test_object_store_writers_are_refused_while_a_lease_is_held(tmp_path) -> None:
    store = LanceDBStore("memory://reliability")
    assert store.path is None
    with store.writer_lock():
        assert store.lease_holder() is not None
        with pytest.raises(WriterBusyError, match="--break-lock"), store.writer_lock():
            pass
    assert store.lease_holder() is None
    with store.writer_lock():
        pass


FUZZED = 200  # mutated PDFs per CI run (the benchmark runs more)


def test_fuzzed_pdfs_are_indexed_or_reported(corpus, tmp_path) -> None:
    from reliability_harness import assert_fuzz_outcome, fuzz_files

    examples = Path(__file__).resolve().parents[1] / "examples" / "data"
    sources = [*corpus["docs"][:3], *sorted(examples.glob("*.pdf"))]
    files = fuzz_files(sources, tmp_path / "fuzz", FUZZED, seed=7)
    index = MultimodalIndex.create(tmp_path / "idx", bm25_config())
    report = index.add(list(files))  # one batch: a bad file never stops it
    assert_fuzz_outcome(index, list(files), report)
    assert report.added and report.failed  # both outcomes occur with this seed
    assert index.retriever().retrieve("Document fact counted", k=3)
    again = index.add(list(files))
    assert not again.added and set(again.failed) == set(report.failed)


def test_object_store_index_writes_under_the_lease(corpus) -> None:
    index = MultimodalIndex.create("memory://lease-index", bm25_config())
    assert index.path is None and index.store.lease_holder() is None
    report = index.add(corpus["docs"][:2])
    assert len(report.added) == 2 and index.store.lease_holder() is None
    with index.store.writer_lock(), pytest.raises(WriterBusyError, match="holds the write lease"):
        index.delete(corpus["ids"][0])  # another writer (here: ourselves) holds the lease
    index.delete(corpus["ids"][0])
    assert index.store.document_ids() == {corpus["ids"][1]} and index.check() == []


def test_two_cli_index_runs_at_once_on_a_new_path(corpus, tmp_path) -> None:
    import sys

    idx = tmp_path / "new-index"
    files = [str(d) for d in corpus["docs"][:3]]
    cmd = [sys.executable, "-m", "mm_retriever.cli", "index", *files, "--index", str(idx)]
    cmd += ["--leg", "bm25", "--ocr", "never", "--dpi", "72"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err[-2000:])
    index = MultimodalIndex.open(idx)
    docs = index.store.query("documents").column("doc_id").to_pylist()
    assert sorted(docs) == sorted(corpus["ids"][:3])  # each once
    assert index.store.count("pages") == index.num_pages() and index.check() == []


CREATE_KILLS = 4  # seeded crash points of creating an index per CI run


def test_kill_9_while_creating_an_index_is_reset_by_index_and_repair(corpus, tmp_path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    rng = random.Random(20261207)
    tables = all_points({"create:table": CREATE_POINTS["create:table"]})
    points = ["create:marked#1", *rng.sample(tables, CREATE_KILLS - 2), "create:manifest#1"]

    def crash(point: str) -> tuple[str, Path, subprocess.CompletedProcess[str]]:
        idx = tmp_path / point.replace(":", "_").replace("#", "_")
        idx.mkdir()
        (idx / "notes.txt").write_text("not ours")  # a file of the user's: never removed
        return point, idx, run_worker(idx, "create", crash_at=point)

    with ThreadPoolExecutor(2) as pool:
        crashed = list(pool.map(crash, points))
    docs = [str(d) for d in corpus["docs"][:2]]
    bm25 = ["--leg", "bm25", "--ocr", "never", "--dpi", "72", "--workers", "0"]
    for point, idx, result in crashed:
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        complete = point.startswith("create:manifest")  # killed after the manifest
        assert MultimodalIndex.exists(idx) == complete, point
        assert (MultimodalIndex.interrupted_creation(idx) is None) == complete, point
        if not complete:
            for cmd in (["doctor"], ["search", "fact"], ["info"]):
                out = CliRunner().invoke(app, [*cmd, "--index", str(idx)])
                assert out.exit_code == 1 and "was interrupted" in out.output, (point, cmd)
                assert "Traceback" not in out.output
            # repair resets it alone (on a copy); index resets it and builds
            copy = tmp_path / f"{idx.name}_repair"
            shutil.copytree(idx, copy)
            out = CliRunner().invoke(app, ["repair", "--yes", "--index", str(copy)])
            assert out.exit_code == 0 and "removed" in out.output, (point, out.output)
            assert MultimodalIndex.interrupted_creation(copy) is None, point
            assert not MultimodalIndex.exists(copy), point
            assert sorted(p.name for p in copy.iterdir() if p.suffix == ".lance") == [], point
            assert (copy / "notes.txt").read_text() == "not ours"
        out = CliRunner().invoke(app, ["index", *docs, "--index", str(idx), *bm25])
        assert out.exit_code == 0, (point, out.output)
        index = MultimodalIndex.open(idx)
        assert index.store.document_ids() == set(corpus["ids"][:2]), point
        assert "creating" not in index.store.table_names(), point
        assert index.check() == [] and (idx / "notes.txt").read_text() == "not ours", point


def test_tables_without_a_creation_marker_are_never_reset(corpus, tmp_path) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(corpus["base"], idx)
    shutil.rmtree(idx / "manifest.lance")  # damaged, but not a half-created index
    before = _tree(idx)
    assert MultimodalIndex.interrupted_creation(idx) is None
    assert MultimodalIndex.reset_interrupted(idx) == []
    with pytest.raises(IndexCorruptError, match="table 'manifest'"):
        MultimodalIndex.open(idx)
    from mm_retriever.index import IndexExistsError

    with pytest.raises(IndexExistsError):
        MultimodalIndex.create(idx, bm25_config())
    assert _tree(idx) == before
