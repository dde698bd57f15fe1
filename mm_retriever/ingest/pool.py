"""Reading documents on every core: open, render, text layer, figures and OCR in worker processes.

``read_documents(files, config, workers=N)`` yields, for each file in order, what a writer
needs: ``Opened`` (the document header), then ``Pages`` batches in page order, then ``Done``;
or ``Unchanged`` (already indexed, or a copy of a file earlier in the run) or ``Failed`` (the
reason; pages already yielded for it must be dropped). ``workers`` <= 1 reads in this process;
more reads in a ``pebble.ProcessPool``: a document is split into tasks of ``batch_size`` pages,
at most ``window`` of them are in flight or waiting to be consumed (memory stays bounded), and a
worker that dies (a PDF that crashes MuPDF, a kill) fails only the document it was reading:
pebble starts a new process and the rest of the batch goes on.

Each worker runs its OCR models on one thread, so N workers keep N cores busy without
oversubscribing them (see ``_init_worker``).

Workers are started by loky (``_start_method``): a fresh interpreter that imports only this
module and never the caller's ``__main__``. So adding works from a script without an
``if __name__ == "__main__":`` guard, from stdin, a notebook or a web server's worker (the
``fork``/``forkserver``/``spawn`` start methods re-run the script in each worker, where it
blocks on the writer lock its parent holds). A daemonic process (a ``multiprocessing.Pool``
worker, some task queues) may not start children: there ``usable_workers`` reads in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import defaultdict, deque
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_retriever import faults
from mm_retriever.config import IngestConfig
from mm_retriever.errors import IngestError
from mm_retriever.ingest.reader import DocumentReader
from mm_retriever.types import Document, Page

WORKERS_ENV = "MM_RETRIEVER_WORKERS"


def default_workers() -> int:
    """``$MM_RETRIEVER_WORKERS`` if set, else the cores this process may use."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return check_workers(int(value))
        except ValueError:
            raise ValueError(
                f"{WORKERS_ENV}={value!r}: use a whole number of reader processes (0 or 1 read "
                "in this process)"
            ) from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(workers: int | None) -> int:
    """``workers`` validated (None: ``default_workers()``); 0 and 1 mean "in this process"."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be a whole number, got {workers!r}")
    if workers < 0:
        raise ValueError(f"workers must be 0 or more (0 or 1: read in this process), got {workers}")
    return workers


def usable_workers(workers: int) -> int:
    """``workers``, or 1 (read in this process) where this process may not start children:
    a daemonic ``multiprocessing`` process (a ``Pool`` worker, a task queue's worker)."""
    if workers > 1 and multiprocessing.current_process().daemon:
        return 1
    return workers


# ------------------------------------------------------------------ events


@dataclass
class Opened:
    """A new document: its header (``document.pages`` empty) and page count."""

    key: str
    document: Document
    n_pages: int
    warning: str | None = None  # damaged but readable


@dataclass
class Pages:
    key: str
    pages: list[Page]


@dataclass
class Done:
    """Every page of ``key`` was yielded; reader seconds per stage and counts (OCR pages)."""

    key: str
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Unchanged:
    key: str
    doc_id: str


@dataclass
class Failed:
    key: str
    reason: str


Event = Opened | Pages | Done | Unchanged | Failed


def read_documents(
    files: Iterable[Path],
    config: IngestConfig,
    *,
    workers: int = 1,
    batch_size: int = 8,
    known: Container[str] = frozenset(),
    window: int | None = None,
) -> Iterator[Event]:
    """The events of reading ``files`` in order (see the module docstring). Documents whose id
    is in ``known`` are ``Unchanged`` and not read. ``window``: page tasks in flight or waiting
    (default ``2 * workers + 4``: results are consumed in file order, so a slow OCR task at the
    head must not leave the other workers idle behind finished, unconsumed tasks)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    workers = usable_workers(check_workers(workers))
    if workers <= 1:
        return _read_here(files, config, batch_size, known)
    return _read_pool(files, config, workers, batch_size, known, window or 2 * workers + 4)


# ------------------------------------------------------------------ in this process


def _read_here(
    files: Iterable[Path], config: IngestConfig, batch_size: int, known: Container[str]
) -> Iterator[Event]:
    seen: set[str] = set()
    for path in files:
        key = str(path)
        t0 = time.perf_counter()
        faults.point("read:open")
        try:
            reader = DocumentReader(path, config)
        except Exception as exc:
            yield Failed(key, _reason(exc))
            continue
        opened = time.perf_counter() - t0
        with reader:
            if reader.doc_id in known or reader.doc_id in seen:
                yield Unchanged(key, reader.doc_id)
                continue
            seen.add(reader.doc_id)
            yield Opened(key, reader.document(), reader.n_pages, reader.warning)
            try:
                faults.point(f"read:{path.name}")
                for start in range(0, reader.n_pages, batch_size):
                    pages = reader.read_pages(start, min(reader.n_pages, start + batch_size))
                    faults.point("read:pages")
                    yield Pages(key, pages)
            except Exception as exc:
                yield Failed(key, f"{type(exc).__name__}: {exc}")
                continue
            yield Done(key, {**reader.timings, "open": opened}, dict(reader.counts))


# ------------------------------------------------------------------ in worker processes

_readers: dict[tuple[str, str], DocumentReader] = {}  # a worker keeps its last document open


def _init_worker(env: dict[str, str], threads: int) -> None:
    """Take the parent's environment (cache folder, crash point), one thread per model."""
    os.environ.clear()
    os.environ.update(env)
    for var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)  # OMP_THREAD_LIMIT: tesseract
    faults.configure(env.get(faults.ENV))
    from mm_retriever.ingest.ocr import set_ocr_threads

    set_ocr_threads(threads)
    try:
        import cv2  # RapidOCR's image operations

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - rapidocr brings opencv
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


@dataclass
class _Header:
    document: Document
    n_pages: int
    warning: str | None
    seconds: float


@dataclass
class _Chunk:
    pages: list[Page]
    timings: dict[str, float]
    counts: dict[str, int]


class _TaskError(Exception):
    """A reader error, as text (``IngestError`` does not survive pickling)."""


def _reader(path: str, config: IngestConfig) -> DocumentReader:
    key = (path, config.model_dump_json())
    reader = _readers.get(key)
    if reader is None:
        for old in _readers.values():
            old.close()
        _readers.clear()
        reader = _readers[key] = DocumentReader(path, config)
    return reader


def _open_task(path: str, config: IngestConfig) -> _Header:
    t0 = time.perf_counter()
    faults.point("read:open")
    try:
        reader = _reader(path, config)
    except Exception as exc:
        raise _TaskError(_reason(exc)) from None
    return _Header(reader.document(), reader.n_pages, reader.warning, time.perf_counter() - t0)


def _pages_task(path: str, config: IngestConfig, start: int, stop: int) -> _Chunk:
    cpu = time.process_time()
    faults.point(f"read:{Path(path).name}")
    try:
        reader = _reader(path, config)
        timings, counts = dict(reader.timings), dict(reader.counts)
        pages = reader.read_pages(start, stop)
    except Exception as exc:
        raise _TaskError(f"{type(exc).__name__}: {exc}") from None
    faults.point("read:pages")
    spent = {k: v - timings.get(k, 0.0) for k, v in reader.timings.items()}
    spent["reader_cpu"] = time.process_time() - cpu  # CPU seconds of the worker on this task
    return _Chunk(pages, spent, {k: v - counts.get(k, 0) for k, v in reader.counts.items()})


@dataclass
class _Doc:
    """A file being read by the pool: its open task, then its page tasks in order."""

    key: str
    path: str
    opening: Future[Any]
    header: _Header | None = None
    failure: str | None = None
    skip: bool = False
    next_start: int = 0
    tasks: deque[tuple[int, int, Future[Any]]] = field(default_factory=deque)


def _start_method() -> Any:
    """loky's context: workers are fresh interpreters (fork + exec) that unpickle their task
    without importing the caller's ``__main__`` (a script without a guard, ``<stdin>``)."""
    from loky.backend.context import get_context

    return get_context("loky")


def _read_pool(
    files: Iterable[Path],
    config: IngestConfig,
    workers: int,
    batch_size: int,
    known: Container[str],
    window: int,
) -> Iterator[Event]:
    from pebble import ProcessPool

    pool = ProcessPool(
        max_workers=workers,
        initializer=_init_worker,
        initargs=(dict(os.environ), 1),
        context=_start_method(),
    )
    try:
        yield from _Schedule(pool, iter(files), config, batch_size, known, window).events()
    finally:
        pool.stop()  # cancels what is left when the consumer stopped early
        pool.join()


class _Schedule:
    """Keeps the pool busy within ``window`` page tasks; hands results back in file order."""

    def __init__(
        self,
        pool: Any,
        files: Iterator[Path],
        config: IngestConfig,
        batch_size: int,
        known: Container[str],
        window: int,
    ) -> None:
        self.pool = pool
        self.files = files
        self.config = config
        self.batch_size = batch_size
        self.known = known
        self.window = window
        self.docs: deque[_Doc] = deque()  # in file order
        self.ids: set[str] = set()  # documents read in this run
        self.outstanding = 0  # page tasks submitted and not yet consumed
        self.more_files = True

    def events(self) -> Iterator[Event]:
        while True:
            self._fill()
            if not self.docs:
                return
            doc = self.docs[0]
            self._wait(doc.opening)
            self._resolve(doc)
            if doc.failure is not None:
                self.docs.popleft()
                yield Failed(doc.key, doc.failure)
                continue
            assert doc.header is not None
            if doc.skip:
                self.docs.popleft()
                yield Unchanged(doc.key, doc.header.document.doc_id)
                continue
            yield from self._document(doc, doc.header)
            self.docs.popleft()

    def _document(self, doc: _Doc, header: _Header) -> Iterator[Event]:
        yield Opened(doc.key, header.document, header.n_pages, header.warning)
        timings: dict[str, float] = defaultdict(float, open=header.seconds)
        counts: dict[str, int] = defaultdict(int)
        done = 0
        while done < header.n_pages:
            while not doc.tasks:  # its next task is not submitted yet
                self._fill()
                if not doc.tasks:
                    self._wait_any()
            start, stop, future = doc.tasks.popleft()
            self._wait(future)
            self.outstanding -= 1
            try:
                chunk: _Chunk = future.result()
            except Exception as exc:
                for _, _, rest in doc.tasks:
                    rest.cancel()
                self.outstanding -= len(doc.tasks)
                doc.tasks.clear()
                doc.next_start = header.n_pages  # nothing more of it is submitted
                yield Failed(doc.key, _task_failure(exc, start, stop))
                return
            for k, v in chunk.timings.items():
                timings[k] += v
            for k, n in chunk.counts.items():
                counts[k] += n
            done = stop
            yield Pages(doc.key, chunk.pages)
        yield Done(doc.key, dict(timings), dict(counts))

    # -------------------------------------------------------------- scheduling

    def _fill(self) -> None:
        """Submit page tasks (earliest document first), opening files ahead as needed."""
        while self.outstanding < self.window:
            doc = next((d for d in self.docs if self._has_work(d)), None)
            if doc is not None:
                assert doc.header is not None
                start = doc.next_start
                stop = min(doc.header.n_pages, start + self.batch_size)
                future = self.pool.schedule(_pages_task, args=(doc.path, self.config, start, stop))
                doc.tasks.append((start, stop, future))
                doc.next_start = stop
                self.outstanding += 1
                continue
            waiting = sum(1 for d in self.docs if not d.opening.done())
            if not self.more_files or waiting or len(self.docs) > self.window:
                return
            path = next(self.files, None)
            if path is None:
                self.more_files = False
                return
            future = self.pool.schedule(_open_task, args=(str(path), self.config))
            self.docs.append(_Doc(str(path), str(path), future))

    def _has_work(self, doc: _Doc) -> bool:
        if doc.header is None and doc.failure is None:
            if not doc.opening.done():
                return False
            self._resolve(doc)
        return (
            doc.header is not None
            and not doc.skip
            and doc.failure is None
            and doc.next_start < doc.header.n_pages
        )

    def _resolve(self, doc: _Doc) -> None:
        """Read the finished open task of ``doc`` (once)."""
        if doc.header is not None or doc.failure is not None:
            return
        try:
            doc.header = doc.opening.result()
        except Exception as exc:
            doc.failure = _task_failure(exc, None, None)
            return
        doc_id = doc.header.document.doc_id
        doc.skip = doc_id in self.known or doc_id in self.ids
        self.ids.add(doc_id)

    def _wait(self, future: Future[Any]) -> None:
        while not future.done():
            self._wait_any()
            self._fill()

    def _wait_any(self) -> None:
        running = [d.opening for d in self.docs if not d.opening.done()]
        running += [f for d in self.docs for _, _, f in d.tasks if not f.done()]
        if running:
            wait(running, timeout=1.0, return_when=FIRST_COMPLETED)


def _task_failure(exc: BaseException, start: int | None, stop: int | None) -> str:
    """Why a pool task failed, for the report."""
    from concurrent.futures import CancelledError

    from pebble import ProcessExpired

    where = f" reading pages {start + 1}-{stop}" if start is not None else " opening it"
    if isinstance(exc, ProcessExpired):
        code = exc.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        return (
            f"the reader process died ({how}){where}; the file may crash the PDF library "
            "(MuPDF), or the process ran out of memory"
        )
    if isinstance(exc, CancelledError):
        return f"reading was cancelled{where}"
    if isinstance(exc, _TaskError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _reason(exc: BaseException) -> str:
    """Why a file could not be opened (as ``IndexWriter`` has always reported it)."""
    if isinstance(exc, IngestError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"
