"""Background writes: one writer thread runs ingestion and deletes, one job at a time.

Searches never wait for it: they read the same ``MultimodalIndex`` whose tables the writer
appends to, and a document shows up once its ``documents`` row (the commit marker) is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mm_retriever.progress import current, listen

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)

JobKind = Literal["add", "delete"]
JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class Job:
    """One write: add uploaded files, or delete a document. ``progress`` is 0..1."""

    id: str
    kind: JobKind
    files: list[str] = field(default_factory=list)  # file names as uploaded
    doc_id: str | None = None  # the document to delete
    status: JobStatus = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    done: int = 0  # files processed
    current: str | None = None
    step: str | None = None  # the slow step running now (model load, index build, ...)
    added: list[dict[str, str]] = field(default_factory=list)  # {"file", "doc_id"}
    unchanged: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}
    pages: int = 0
    error: str | None = None
    paths: list[Path] = field(default_factory=list, repr=False)  # where the uploads lie

    @property
    def total(self) -> int:
        return len(self.files) if self.kind == "add" else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.done / self.total, 4) if self.total else 1.0,
            "done": self.done,
            "total": self.total,
            "current": self.current,
            "step": self.step,
            "files": self.files,
            "doc_id": self.doc_id,
            "added": self.added,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "pages": self.pages,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class Writer:
    """A single background thread applying jobs to ``index`` in order.

    ``on_change`` runs after every job that changed the index. Finished jobs are kept (the
    last ``keep``) so clients can read their outcome. Deleting a document whose file lies
    under ``upload_root`` (it was uploaded) removes the file too.
    """

    def __init__(
        self,
        index: MultimodalIndex,
        on_change: Callable[[], None] | None = None,
        keep: int = 500,
        upload_root: Path | None = None,
    ) -> None:
        self.index = index
        self.upload_root = upload_root
        self.on_change = on_change
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mm-retriever-writer", daemon=True)
        self._thread.start()

    # --------------------------------------------------------------- clients
    def submit_add(self, files: list[str], paths: list[Path]) -> Job:
        return self._submit(Job(id=_new_id(), kind="add", files=files, paths=paths))

    def submit_delete(self, doc_id: str) -> Job:
        return self._submit(Job(id=_new_id(), kind="delete", doc_id=doc_id))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def pending(self) -> int:
        with self._lock:
            return sum(j.status in ("queued", "running") for j in self._jobs.values())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every submitted job has finished (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Finish the running job, drop the queued ones, stop the thread."""
        with self._lock:
            for job in self._jobs.values():
                if job.status == "queued":
                    job.status, job.error = "failed", "the server shut down before this job ran"
        self._queue.put(None)
        self._thread.join(timeout)

    # --------------------------------------------------------------- thread
    def _submit(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                old = next(iter(self._jobs.values()))
                if old.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        self._queue.put(job)
        return job

    def _run(self) -> None:
        _lower_priority()
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.status != "queued":
                continue
            job.status, job.started_at = "running", time.time()
            try:
                with listen(_StepOf(job)):  # this thread's slow steps, shown on the job
                    changed = self._add(job) if job.kind == "add" else self._delete(job)
                job.status = "done"
            except Exception as exc:  # report on the job; the thread lives on
                log.exception("job %s failed", job.id)
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
                changed = True
            job.current, job.step, job.finished_at = None, None, time.time()
            if changed and self.on_change is not None:
                with contextlib.suppress(Exception):
                    self.on_change()

    def _add(self, job: Job) -> bool:
        known = {d["doc_id"] for d in self.index.documents()}
        changed = False
        for name, path in zip(job.files, job.paths, strict=True):
            job.current = name
            try:
                report = self.index.add([path])
            except Exception as exc:
                job.failed.append({"file": name, "reason": f"{type(exc).__name__}: {exc}"})
                _remove(path)
            else:
                doc_id = report.doc_ids.get(str(path))
                if report.added:
                    job.added.append({"file": name, "doc_id": doc_id or ""})
                    job.pages += report.pages
                    changed = True
                elif report.unchanged:
                    job.unchanged.append({"file": name, "doc_id": doc_id or ""})
                    if doc_id in known:  # the copy indexed earlier stays the source
                        _remove(path)
                for reason in report.failed.values():
                    job.failed.append({"file": name, "reason": reason})
                    _remove(path)
            job.done += 1
        return changed

    def _delete(self, job: Job) -> bool:
        assert job.doc_id is not None
        source = next(
            (d["source"] for d in self.index.documents() if d["doc_id"] == job.doc_id), None
        )
        job.current = job.doc_id
        self.index.delete(job.doc_id)
        if source and self.upload_root is not None:
            path = Path(source)
            with contextlib.suppress(ValueError):  # only files the service itself stored
                path.resolve().relative_to(self.upload_root.resolve())
                _remove(path)
        job.done = 1
        return True


class _StepOf:
    """Keeps ``job.step`` on the innermost slow step of the writer thread."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __call__(self, description: str, started: bool) -> None:
        self.job.step = description if started else current()


def _remove(path: Path) -> None:
    """Delete an uploaded file and its job folder once empty."""
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()
    if path.parent.exists() and not any(path.parent.iterdir()):
        shutil.rmtree(path.parent, ignore_errors=True)


def _lower_priority(niceness: int = 10) -> None:
    """Nice this thread (Linux: threads have their own priority), so searches run first."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def _new_id() -> str:
    return uuid.uuid4().hex[:16]
