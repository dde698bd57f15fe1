"""Background writes: one writer thread runs ingestion and deletes, one job at a time.

Searches never wait for it: they read the same ``MultimodalIndex`` whose tables the writer
appends to, and a document shows up once its ``documents`` row (the commit marker) is written.

Uploads wait in the server's spool folder (``<index>/_uploads/`` by default) until their job has
run. Then each file is deleted unless the index still needs it: an index that keeps sources
(``image_store="source"``, the default) holds the file's bytes in its ``sources`` table, from
which page images, figure crops and word boxes are read, so the upload goes; a document of an
``encoded`` index keeps its uploaded file, the only copy of its text layer (word boxes for
overlays). Files of jobs that never finished (a killed server) are swept at start
(``sweep_uploads``). Only the spool folder is touched, never the index's tables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
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
from mm_retriever.serve.logs import logfmt

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)
#: a spooled file older than this, that no document needs, is a leftover (seconds)
STALE_UPLOAD_S = 3600.0
#: the name of an upload's job folder: ``20261207-231041-9c1e2f3a`` (time, random hex)
JOB_FOLDER = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")

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
                    log.warning(_line("job_failed", job))
                    for path in job.paths:
                        _remove(path)
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
        log.info(_line("job_queued", job))
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
            log.info(_line("job_started", job, waited_s=job.started_at - job.created_at))
            status = "done"
            try:
                with listen(_StepOf(job)):  # this thread's slow steps, shown on the job
                    changed = self._add(job) if job.kind == "add" else self._delete(job)
            except Exception as exc:  # report on the job; the thread lives on
                log.debug("job %s failed", job.id, exc_info=True)
                status, job.error = "failed", f"{type(exc).__name__}: {exc}"
                changed = True
            finally:
                for path in job.paths:
                    self._release(path)
            # finished only once its uploads are released: a client that sees "done" sees them gone
            job.current, job.step, job.finished_at = None, None, time.time()
            job.status = status
            log.log(
                logging.INFO if job.status == "done" else logging.WARNING,
                _line(f"job_{job.status}", job, s=job.finished_at - job.started_at),
            )
            if changed and self.on_change is not None:
                with contextlib.suppress(Exception):
                    self.on_change()

    def _add(self, job: Job) -> bool:
        changed = False
        for name, path in zip(job.files, job.paths, strict=True):
            job.current = name
            try:
                report = self.index.add([path])
            except Exception as exc:
                job.failed.append({"file": name, "reason": f"{type(exc).__name__}: {exc}"})
            else:
                doc_id = report.doc_ids.get(str(path))
                if report.added:
                    job.added.append({"file": name, "doc_id": doc_id or ""})
                    job.pages += report.pages
                    changed = True
                elif report.unchanged:  # the copy indexed earlier stays the source
                    job.unchanged.append({"file": name, "doc_id": doc_id or ""})
                for reason in report.failed.values():
                    job.failed.append({"file": name, "reason": reason})
            job.done += 1
        return changed

    def _release(self, path: Path) -> None:
        """Delete an upload once its job ran, unless a document still reads it."""
        try:
            if _needed_uploads(self.index, path.parent) & {path.resolve()}:
                return
        except Exception as exc:  # the index cannot say: keep the file, a later start sweeps
            log.warning(logfmt(event="upload_kept", path=str(path), error=str(exc)))
            return
        _remove(path)

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


def _needed_uploads(index: MultimodalIndex, under: Path) -> set[Path]:
    """Files under ``under`` that are a document's only source file (no ``sources`` row)."""
    needed = set()
    root = under.resolve()
    for doc in index.documents():
        path = Path(doc["source"]).resolve()
        if path.is_relative_to(root) and not index.page_images.has_source(doc["doc_id"]):
            needed.add(path)
    return needed


def sweep_uploads(
    index: MultimodalIndex, upload_root: Path, older_than: float = STALE_UPLOAD_S
) -> int:
    """Delete spooled uploads that no document needs and that are older than ``older_than``
    seconds (files of jobs a killed server never finished); returns how many went.

    The age guard spares the uploads of a job that another server on the same index is
    running now.
    """
    if not upload_root.is_dir():
        return 0
    needed = _needed_uploads(index, upload_root)
    cutoff = time.time() - older_than
    removed = 0
    # only the job folders this server makes (see app.upload): never a user's own files
    for folder in (p for p in upload_root.iterdir() if p.is_dir() and JOB_FOLDER.match(p.name)):
        for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
            with contextlib.suppress(OSError):
                if path.is_file() and path.resolve() not in needed:
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        with contextlib.suppress(OSError):
            if not any(folder.iterdir()):
                folder.rmdir()
    log.info(logfmt(event="uploads_swept", removed=removed, kept=len(needed)))
    return removed


def _line(event: str, job: Job, **timing: float) -> str:
    counts: dict[str, Any] = {}
    if job.kind == "add":
        counts = {
            "files": len(job.files),
            "added": len(job.added),
            "unchanged": len(job.unchanged),
            "failed": len(job.failed),
            "pages": job.pages,
        }
        if event in ("job_queued", "job_started"):
            counts = {"files": len(job.files)}
    return logfmt(
        event=event,
        job=job.id,
        kind=job.kind,
        doc_id=job.doc_id,
        **counts,
        **timing,
        error=job.error,
    )


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
