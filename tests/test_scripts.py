"""Adding works wherever Python runs: a script without a ``__main__`` guard, a script piped
through stdin, a daemonic process; and every Python block of the README runs verbatim."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf

ROOT = Path(__file__).resolve().parents[1]

# no guard: run as a script, each worker process that imported it would create the index again
# (blocking on the writer lock this process holds) and print the marker line again
UNGUARDED = """
import sys
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.index import MultimodalIndex

print("script body ran", file=sys.stderr)
config = IndexConfig(ingest=IngestConfig(ocr="never", dpi=72), legs=[LegSpec(name="bm25")])
index = MultimodalIndex.create("idx", config, overwrite=True)
report = index.add(["docs"], workers=2)
print("added", len(report.added), "failed", len(report.failed), "workers", report.workers)
print(index.retriever().retrieve("Pellham lighthouse keeper", k=1)[0].citation)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for i, fact in enumerate(["The Pellham lighthouse keeper was Ada Moss.", "Rainfall notes."]):
        make_sample_pdf(tmp_path / "docs" / f"doc{i}.pdf", [fact, f"Second page {i}."])
    return tmp_path


def _python(args: list[str], cwd: Path, stdin: str | None = None, timeout: float = 240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,  # the bug this guards against was a hang
        env=env,
    )


def _check_added(result: subprocess.CompletedProcess, workers: int = 2) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"added 2 failed 0 workers {workers}" in result.stdout
    assert "doc0.pdf, p. 1" in result.stdout
    assert result.stderr.count("script body ran") == 1  # no worker re-ran the script


def test_add_with_workers_from_a_script_without_a_main_guard(workdir: Path) -> None:
    (workdir / "unguarded.py").write_text(UNGUARDED)
    _check_added(_python(["unguarded.py"], workdir))


def test_add_with_workers_from_stdin(workdir: Path) -> None:
    _check_added(_python(["-"], workdir, stdin=UNGUARDED))


def test_add_in_a_daemonic_process_reads_in_process(workdir: Path) -> None:
    """A multiprocessing Pool worker (daemonic) may not start children: it reads itself."""
    script = textwrap.dedent(
        """
        import multiprocessing, sys

        def add(_):
            import io, contextlib
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(open("unguarded.py").read(), {"__name__": "job"})
            return out.getvalue()

        if __name__ == "__main__":
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                print(pool.map(add, [0])[0])
        """
    )
    (workdir / "unguarded.py").write_text(UNGUARDED)
    (workdir / "daemon.py").write_text(script)
    _check_added(_python(["daemon.py"], workdir), workers=1)


# ------------------------------------------------------------------ README


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_the_blocks_this_test_runs() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 8
    assert any("MMRetriever(index=index, k=3)" in b for b in blocks)  # the LangChain block


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs_verbatim(tmp_path: Path) -> None:
    """Each block, as its own script, in README order, in a folder with what the README
    assumes: ``examples/data`` and ``./pdfs`` (the sample PDFs); blocks after the LangChain
    block open the ``./pdf-index`` it builds."""
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "examples" / "data")
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "pdfs")
    for n, block in enumerate(readme_blocks(), 1):
        script = tmp_path / f"block{n}.py"
        script.write_text(block)
        result = _python([script.name], tmp_path, timeout=420)
        assert result.returncode == 0, f"README block {n}:\n{block}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, f"README block {n}:\n{result.stderr[-3000:]}"
