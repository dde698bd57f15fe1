"""Reading in a process pool (``workers``): same rows as reading in-process, a crashing PDF
fails alone, bad files are reported, the setting is validated."""

from __future__ import annotations

import numpy as np
import pytest
from pdfgen import (
    make_corrupt_pdf,
    make_encrypted_pdf,
    make_fake_pdf,
    make_image_document,
    make_mixed_pdf,
    make_sample_pdf,
    make_scanned_pdf,
)
from reliability_harness import row_sets
from shared_fixtures import text_index_config

from mm_retriever.config import IngestConfig
from mm_retriever.faults import ENV as CRASH_ENV
from mm_retriever.index import MultimodalIndex
from mm_retriever.ingest.pool import (
    WORKERS_ENV,
    Done,
    Opened,
    Pages,
    Unchanged,
    check_workers,
    default_workers,
    read_documents,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list:
    """Four documents: two text PDFs (one of 11 pages: two read tasks), a mixed one with
    figures, a scanned one (OCR) and a PNG."""
    root = tmp_path_factory.mktemp("pool")
    long_facts = [
        f"Paragraph {i}: the lighthouse of Quillon burned {i * 7} lamps." for i in range(11)
    ]
    return [
        make_sample_pdf(root / "a.pdf", ["The capital of Freedonia is Lumen."], title="A"),
        make_sample_pdf(root / "long.pdf", long_facts, title="Long"),
        make_mixed_pdf(root / "mixed.pdf").path,
        make_scanned_pdf(root / "scanned.pdf"),
        make_image_document(root / "scan.png"),
    ]


def _config(minilm_path: str):
    config = text_index_config(minilm_path)
    config.ingest = IngestConfig(ocr="auto", dpi=72)
    return config


def test_pool_writes_the_same_rows_as_reading_in_process(files, tmp_path, minilm_path) -> None:
    here = MultimodalIndex.create(tmp_path / "here", _config(minilm_path))
    pooled = MultimodalIndex.create(tmp_path / "pooled", _config(minilm_path))
    r1 = here.add(files, workers=1)
    r2 = pooled.add(files, workers=2)
    assert r1.ok and r2.ok, (r1.failed, r2.failed)
    assert (r1.workers, r2.workers) == (1, 2)
    assert r2.added == r1.added == [str(f) for f in files]  # committed in file order
    assert (
        r2.pages == r1.pages == sum(pooled.store.query("documents").column("n_pages").to_pylist())
    )
    assert r1.pages > 14  # the long document was split into several read tasks
    assert row_sets(pooled) == row_sets(here)
    for table in ("leg_text", "pages"):
        a = here.store.query(table).sort_by([("doc_id", "ascending"), ("page_index", "ascending")])
        b = pooled.store.query(table).sort_by(
            [("doc_id", "ascending"), ("page_index", "ascending")]
        )
        if table == "pages":  # the same rendered page images
            assert a.column("image").to_pylist() == b.column("image").to_pylist()
        else:
            va, vb = (
                np.array(a.column("vector").to_pylist()),
                np.array(b.column("vector").to_pylist()),
            )
            np.testing.assert_allclose(va, vb, atol=1e-5)
    # the OCR'd page went through a worker's OCR engine
    assert r2.timings["ocr"] > 0
    assert pooled.store.pending() == []


def test_a_pdf_that_kills_its_reader_fails_alone(files, tmp_path, minilm_path, monkeypatch):
    index = MultimodalIndex.create(tmp_path / "idx", _config(minilm_path))
    monkeypatch.setenv(CRASH_ENV, "read:long.pdf")  # SIGKILL the worker that reads it
    report = index.add(files, workers=2)
    long_pdf = str(files[1])
    assert list(report.failed) == [long_pdf]
    assert "reader process died (killed by SIGKILL)" in report.failed[long_pdf]
    assert report.added == [str(f) for f in files if str(f) != long_pdf]
    assert long_pdf not in report.doc_ids
    assert index.store.pending() == []
    assert len(index.documents()) == len(files) - 1
    # nothing of it was written; without the fault it is indexed on the next add
    monkeypatch.delenv(CRASH_ENV)
    again = index.add(files, workers=2)
    assert again.added == [long_pdf] and again.ok
    assert sorted(again.unchanged) == sorted(str(f) for f in files if str(f) != long_pdf)


def test_bad_files_are_reported_and_the_rest_indexed(files, tmp_path, minilm_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = [
        make_corrupt_pdf(bad / "corrupt.pdf"),
        make_encrypted_pdf(bad / "encrypted.pdf"),
        make_fake_pdf(bad / "fake.pdf"),
    ]
    mixed = [files[0], *broken, files[2]]
    reports = {}
    for workers in (1, 2):
        index = MultimodalIndex.create(tmp_path / f"w{workers}", _config(minilm_path))
        reports[workers] = index.add(mixed, workers=workers)
    assert reports[2].failed == reports[1].failed  # the same reasons either way
    assert set(reports[2].failed) == {str(p) for p in broken}
    assert "encrypted" in reports[2].failed[str(broken[1])]
    assert reports[2].added == [str(files[0]), str(files[2])]


def test_read_documents_yields_each_file_in_order(files) -> None:
    config = IngestConfig(ocr="never", dpi=36)
    events = list(read_documents([files[1], files[0], files[1]], config, workers=2, batch_size=4))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Opened" and kinds[-1] == "Unchanged"  # a copy within one run
    long_pages = [p.page_index for e in events if isinstance(e, Pages) for p in e.pages][:11]
    assert long_pages == list(range(11))
    done = [e for e in events if isinstance(e, Done)]
    assert [d.key for d in done] == [str(files[1]), str(files[0])]
    assert done[0].timings["render"] > 0
    opened = [e for e in events if isinstance(e, Opened)]
    known = {opened[0].document.doc_id}
    events = list(read_documents([files[1]], config, workers=2, known=known))
    assert [type(e) for e in events] == [Unchanged]


def test_workers_setting_is_validated(files, tmp_path, minilm_path, monkeypatch) -> None:
    assert check_workers(0) == 0 and check_workers(3) == 3
    with pytest.raises(ValueError, match="0 or more"):
        check_workers(-1)
    with pytest.raises(TypeError):
        check_workers(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_workers(2.5)  # type: ignore[arg-type]
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert default_workers() == check_workers(None) == 3
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=WORKERS_ENV):
        default_workers()
    monkeypatch.delenv(WORKERS_ENV)
    assert default_workers() >= 1
    index = MultimodalIndex.create(tmp_path / "idx", _config(minilm_path))
    with pytest.raises(ValueError, match="0 or more"):
        index.add(files[0], workers=-2)
    assert index.documents() == []  # nothing was written


def test_cli_index_takes_workers(files, tmp_path, minilm_path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    args = ["index", str(files[0]), "--index", str(tmp_path / "idx"), "--leg", "bm25"]
    result = CliRunner().invoke(app, [*args, "--workers", "2", "--ocr", "never"])
    assert result.exit_code == 0, result.output
    assert "indexed 1 document(s)" in result.output
    result = CliRunner().invoke(app, [*args, "--workers", "-1"])
    assert result.exit_code == 2 and "greater than or equal to 0" in result.output


def test_bm25_only_index_adds_with_a_pool_without_torch(files, tmp_path) -> None:
    """No leg embeds with a model: the writer has no encoder threads to set, so a fresh
    process indexes with workers=2 without importing torch (~1.5 s)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mm_retriever.config import IndexConfig, IngestConfig, LegSpec\n"
        "from mm_retriever.index import MultimodalIndex\n"
        "cfg = IndexConfig(ingest=IngestConfig(ocr='never'), legs=[LegSpec(name='bm25')])\n"
        f"index = MultimodalIndex.create({str(tmp_path / 'idx')!r}, cfg)\n"
        f"report = index.add({[str(f) for f in files[:2]]!r}, workers=2)\n"
        "print(report.ok, len(report.added), 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["True", "2", "False"], out.stdout + out.stderr
