"""Slow steps are told to listeners: the CLI's spinner (every thread) and a service job's
status (its writer thread), on a real index build."""

from __future__ import annotations

import threading
from pathlib import Path

from pdfgen import make_sample_pdf
from reliability_harness import bm25_config

from mm_retriever import progress
from mm_retriever.index import MultimodalIndex
from mm_retriever.serve.jobs import Writer


def test_steps_nest_and_reach_the_listeners_of_their_thread() -> None:
    mine: list[tuple[str, bool]] = []
    everyone: list[tuple[str, bool]] = []

    def elsewhere() -> None:
        with progress.step("in another thread"):
            pass

    with (
        progress.listen(lambda d, s: mine.append((d, s))),
        progress.listen(lambda d, s: everyone.append((d, s)), all_threads=True),
    ):
        with progress.step("outer"):
            with progress.step("inner"):
                assert progress.current() == "inner"
            assert progress.current() == "outer"
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert progress.current() is None
    nested = [("outer", True), ("inner", True), ("inner", False), ("outer", False)]
    assert mine == nested
    assert everyone == [*nested, ("in another thread", True), ("in another thread", False)]
    with progress.step("after"):  # nobody listens any more
        pass
    assert len(everyone) == 6


def test_a_listener_that_fails_never_breaks_the_work() -> None:
    def broken(description: str, started: bool) -> None:
        raise RuntimeError("display gone")

    with progress.listen(broken), progress.step("work"):
        done = True
    assert done


def test_a_job_shows_its_slow_steps(tmp_path: Path) -> None:
    pdf = make_sample_pdf(tmp_path / "up" / "ferry.pdf", ["The ferry carried 812 people."])
    index = MultimodalIndex.create(tmp_path / "idx", bm25_config())
    index.workers = 0
    writer = Writer(index, upload_root=tmp_path / "up")
    seen: list[tuple[str, bool, str | None]] = []
    try:
        # a listener of every thread sees each step end while the job still shows it
        with progress.listen(lambda d, s: seen.append((d, s, job.step)), all_threads=True):
            job = writer.submit_add(["ferry.pdf"], [pdf])
            assert writer.wait_idle(120)
    finally:
        writer.close()
    assert job.status == "done", job.error
    ended = [(d, shown) for d, started, shown in seen if not started]
    assert (
        "building a full-text index on leg_bm25.text",
        "building a full-text index on leg_bm25.text",
    ) in ended
    assert all(d == shown for d, shown in ended), ended
    assert job.to_dict()["step"] is None  # finished: no step runs
