"""The Ray Data engine (``index.add(engine="ray")``) on a local Ray cluster started here.

- a Ray build of generated and example PDFs (with bad files among them) holds exactly the rows
  of a local build in every table, reports the same failures, and ranks a query the same;
- an index built by Ray opens, searches, adds and deletes locally; Ray adds to a local index;
- a driver killed (SIGKILL) mid-pipeline or between the fragment and the documents commits
  leaves no visible partial document, and a re-run completes without duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # workers use this interpreter
ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")
pytest.importorskip("lance", reason="the 'ray' extra is not installed")

from reliability_harness import (  # noqa: E402
    assert_consistent,
    bm25_config,
    make_docs,
    row_sets,
)
from s3_helpers import moto_s3  # noqa: E402
from shared_fixtures import text_index_config  # noqa: E402
from tiny_models import tiny_model_dir  # noqa: E402

from mm_retriever.config import LegSpec  # noqa: E402
from mm_retriever.faults import ENV as CRASH_ENV  # noqa: E402
from mm_retriever.faults import ONCE_ENV  # noqa: E402
from mm_retriever.index import MultimodalIndex  # noqa: E402
from mm_retriever.index.ray_engine import RayOptions  # noqa: E402
from mm_retriever.store.schema import FILINGS, PAGE_SECTIONS  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
WORKER = Path(__file__).with_name("ray_add_worker.py")
QUERIES = ["Document fact counted lanterns", "water quality survey chart", "solar market"]


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (2 CPUs, small object store), shut down at the end."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300 * 1024 * 1024,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, minilm_path) -> dict:
    """Generated PDFs (two with figures), the example PDFs, a duplicate and two bad files."""
    root = tmp_path_factory.mktemp("ray")
    docs = root / "docs"
    make_docs(docs, 5, seed=7)
    for pdf in sorted(EXAMPLES.glob("*.pdf")):
        shutil.copy(pdf, docs / pdf.name)
    shutil.copy(docs / "doc000.pdf", docs / "copy_of_doc000.pdf")  # same content: unchanged
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a PDF body")
    (docs / "empty.pdf").write_bytes(b"")
    colpali = tiny_model_dir("colpali", tmp_path_factory)
    page_leg = LegSpec(
        name="page", options={"encoder": {"name": "colpali", "options": {"model": str(colpali)}}}
    )
    config = text_index_config(minilm_path, page_leg)
    local = MultimodalIndex.create(root / "local", config)
    local_report = local.add(docs)
    assert len(local_report.added) == 7 and len(local_report.failed) == 2
    return {"root": root, "docs": docs, "config": config, "local": local, "report": local_report}


@pytest.fixture(scope="module")
def ray_built(ray_cluster, corpus) -> tuple[MultimodalIndex, object]:
    index = MultimodalIndex.create(corpus["root"] / "ray", corpus["config"])
    report = index.add(corpus["docs"], engine="ray", cpus_per_reader=1)
    return index, report


def _key(keys: list[str]):
    return lambda row: tuple(row[k] for k in keys)


def _ranking(index: MultimodalIndex, query: str) -> list[tuple[str, int]]:
    return [(p.doc_id, p.page_index) for p in index.retriever().retrieve(query, k=8)]


def test_ray_build_equals_local_build(corpus, ray_built) -> None:
    index, report = ray_built
    local, expected = corpus["local"], corpus["report"]
    assert sorted(report.added) == sorted(expected.added)
    # files are taken in sorted order: the copy comes first, so the original is "unchanged"
    assert report.unchanged == expected.unchanged == [str(corpus["docs"] / "doc000.pdf")]
    assert report.failed == expected.failed
    assert set(report.failed) == {str(corpus["docs"] / n) for n in ("broken.pdf", "empty.pdf")}
    assert all(report.failed.values())  # every failure has its reason
    assert report.doc_ids == expected.doc_ids
    assert report.pages == expected.pages == local.num_pages()
    assert {"read", "encode:text", "encode:page", "write", "commit"} <= set(report.timings)
    ray_rows, local_rows = row_sets(index), row_sets(local)
    assert (
        set(ray_rows)
        == set(local_rows)
        >= {
            "documents",
            "pages",
            "figures",
            "leg_text",
            "leg_bm25",
            "leg_figure",
            "leg_page",
        }
    )
    for table, rows in local_rows.items():
        assert ray_rows[table] == rows, table
        # every table holds rows (the comparison is not vacuous), but the filing tables: no
        # filings here
        assert rows or table in (FILINGS, PAGE_SECTIONS), table
    # binary columns too: page images and figure crops, byte for byte
    for table in ("pages", "figures"):
        cols = ["doc_id", "page_index", "image"]
        mine = sorted(map(str, index.store.query(table, columns=cols).to_pylist()))
        theirs = sorted(map(str, local.store.query(table, columns=cols).to_pylist()))
        assert mine == theirs, table
    # embeddings: equal up to float noise (encoder batches hold other pages, so padding differs)
    for table, keys, vector in [
        ("leg_text", ["doc_id", "page_index", "chunk_index"], "vector"),
        ("leg_page", ["doc_id", "page_index"], "vectors"),
    ]:
        mine, theirs = (
            sorted(i.store.query(table, columns=[*keys, vector]).to_pylist(), key=_key(keys))
            for i in (index, local)
        )
        assert [_key(keys)(r) for r in mine] == [_key(keys)(r) for r in theirs], table
        for a, b in zip(mine, theirs, strict=True):
            assert np.allclose(np.asarray(a[vector], "f4"), np.asarray(b[vector], "f4"), atol=2e-3)
    for query in QUERIES:
        assert _ranking(index, query) == _ranking(local, query), query
    assert index.check() == [] and index.store.pending() == []


def test_ray_built_index_adds_and_deletes_locally(corpus, ray_built, tmp_path) -> None:
    index, _ = ray_built
    copy = tmp_path / "copy"
    shutil.copytree(index.uri, copy)
    reopened = MultimodalIndex.open(copy)
    extra = make_docs(tmp_path / "more", 2, seed=99)
    report = reopened.add(extra)  # the local engine, on an index Ray built
    assert len(report.added) == 2 and not report.failed
    doc_id = report.doc_ids[str(extra[0])]
    reopened.delete(doc_id)
    assert doc_id not in reopened.store.document_ids()
    reference = MultimodalIndex.create(tmp_path / "reference", corpus["config"])
    reference.add([corpus["docs"], extra[1]])
    assert row_sets(reopened) == row_sets(reference)
    assert _ranking(reopened, QUERIES[0]) == _ranking(reference, QUERIES[0])
    assert reopened.check() == []


def test_ray_adds_to_a_local_index(ray_cluster, tmp_path) -> None:
    docs = make_docs(tmp_path / "docs", 4, seed=5)
    clean = MultimodalIndex.create(tmp_path / "clean", bm25_config())
    clean.add(docs)
    index = MultimodalIndex.create(tmp_path / "index", bm25_config())
    index.add(docs[:2])  # local
    report = index.add(docs, engine="ray")
    assert sorted(report.unchanged) == sorted(map(str, docs[:2]))
    assert sorted(report.added) == sorted(map(str, docs[2:])) and not report.failed
    assert row_sets(index) == row_sets(clean)
    again = index.add(docs, engine="ray")  # nothing new: nothing written
    assert again.added == [] and len(again.unchanged) == 4
    assert row_sets(index) == row_sets(clean) and index.check() == []


@pytest.mark.parametrize(
    ("crash_at", "committed_before"),
    [
        ("ray:batch#1", 0),  # mid-pipeline: nothing committed yet
        ("ray:documents#1", 0),  # every table's fragments committed, no documents row
        ("ray:documents#2", 1),  # one document committed (commit_every=1), the rest not
    ],
)
def test_rerun_after_killed_driver(ray_cluster, tmp_path, crash_at, committed_before) -> None:
    docs = make_docs(tmp_path / "docs", 3, seed=13)
    clean = MultimodalIndex.create(tmp_path / "clean", bm25_config())
    clean.add(docs)
    reference = row_sets(clean)
    idx = tmp_path / "index"
    MultimodalIndex.create(idx, bm25_config())
    env = dict(os.environ, OMP_NUM_THREADS="1", **{CRASH_ENV: crash_at})
    result = subprocess.run(
        [sys.executable, str(WORKER), str(idx), ray_cluster, *map(str, docs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    index = MultimodalIndex.open(idx)
    committed = assert_consistent(index, reference)  # no half document is visible
    assert len(committed) == committed_before
    assert index.store.pending()  # the dead driver's markers name what it was writing
    for page in index.retriever().retrieve("Document fact counted", k=20):
        assert page.doc_id in committed
    report = index.add(docs, engine="ray")  # the re-run
    assert report.recovered and not report.failed
    assert len(report.added) == 3 - committed_before
    assert row_sets(index) == reference  # no duplicates, nothing missing
    assert index.store.pending() == [] and index.check() == []


def test_worker_run_reports_json(ray_cluster, tmp_path) -> None:
    """The subprocess driver (as used above) completes when nothing crashes."""
    docs = make_docs(tmp_path / "docs", 2, seed=17)
    idx = tmp_path / "index"
    MultimodalIndex.create(idx, bm25_config())
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    result = subprocess.run(
        [sys.executable, str(WORKER), str(idx), ray_cluster, *map(str, docs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["added"]) == 2 and out["failed"] == {}
    assert len(MultimodalIndex.open(idx)) == 2


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="cpus_per_reader"):
        RayOptions(cpus_per_reader=0)
    with pytest.raises(ValueError, match="commit_every"):
        RayOptions(commit_every=0)


def test_unknown_engine_is_refused(tmp_path) -> None:
    index = MultimodalIndex.create(tmp_path / "i", bm25_config())
    with pytest.raises(ValueError, match="engine"):
        index.add([], engine="spark")


def test_object_store_uri(ray_cluster, tmp_path) -> None:
    """The pipeline writes to an s3:// URI through Lance (moto's S3 server on 127.0.0.1)."""
    with moto_s3() as (s3, options):
        docs = make_docs(tmp_path / "docs", 3, seed=23)
        (tmp_path / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
        clean = MultimodalIndex.create(tmp_path / "clean", bm25_config())
        clean.add(docs)
        uri = "s3://indexes/reports"
        index = MultimodalIndex.create(uri, bm25_config(), storage_options=options)
        index.add(docs[:1])  # local first, then Ray adds the rest
        report = index.add(tmp_path / "docs", engine="ray")
        assert sorted(report.added) == sorted(map(str, docs[1:]))
        assert list(report.failed) == [str(tmp_path / "docs" / "broken.pdf")]
        reopened = MultimodalIndex.open(uri, storage_options=options)
        assert row_sets(reopened) == row_sets(clean)
        assert reopened.check() == [] and reopened.store.pending() == []
        listed = s3.list_objects_v2(Bucket="indexes", Prefix="reports/pages.lance/data/")
        assert listed["KeyCount"] > 0  # the rows really live in the bucket


def test_cli_engine_ray(ray_cluster, tmp_path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    docs = make_docs(tmp_path / "docs", 2, seed=29)
    args = ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "index")]
    args += ["--leg", "bm25", "--ocr", "never", "--dpi", "72"]
    result = CliRunner().invoke(app, [*args, "--engine", "ray", "--cpus-per-reader", "1"])
    assert result.exit_code == 0, result.output
    assert "indexed 2 document(s)" in result.output
    assert len(MultimodalIndex.open(tmp_path / "index")) == len(docs)
    refused = CliRunner().invoke(app, [*args, "--gpus-per-encoder", "1"])
    assert refused.exit_code != 0 and "need --engine ray" in refused.output


def test_missing_extra_names_the_fix(monkeypatch, tmp_path) -> None:
    from mm_retriever.errors import MissingExtraError

    index = MultimodalIndex.create(tmp_path / "i", bm25_config())
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"mm-retriever\[ray\].*uv sync --extra ray"):
        index.add([], engine="ray")


@pytest.mark.parametrize("crash_at", ["ray:read#1", "ray:encode:bm25#1"])
def test_killed_worker_is_retried(ray_cluster, tmp_path, crash_at) -> None:
    """A read task's worker or an encoder actor killed (SIGKILL) mid-run: Ray runs it again
    and the add completes with exactly the rows of a clean build."""
    docs = make_docs(tmp_path / "docs", 3, seed=31)
    clean = MultimodalIndex.create(tmp_path / "clean", bm25_config())
    clean.add(docs)
    idx = tmp_path / "index"
    MultimodalIndex.create(idx, bm25_config())
    once = tmp_path / "crashed"
    env = dict(os.environ, OMP_NUM_THREADS="1", **{CRASH_ENV: crash_at, ONCE_ENV: str(once)})
    result = subprocess.run(
        [sys.executable, str(WORKER), str(idx), ray_cluster, *map(str, docs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert once.exists()  # a worker did die there
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(out["added"]) == 3 and out["failed"] == {}
    index = MultimodalIndex.open(idx)
    assert row_sets(index) == row_sets(clean)
    assert index.store.pending() == [] and index.check() == []
