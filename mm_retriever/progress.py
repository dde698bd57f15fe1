"""Steps that can take a while (loading a model, exporting it to ONNX, building an index), told
to whoever listens: the CLI draws a spinner, the service shows the step in a job's status.

Code that may be slow wraps itself in ``with step("loading text model X"):``; that costs a list
look-up when nobody listens. A listener is called with ``(description, True)`` when a step
starts and ``(description, False)`` when it ends (steps nest; ``current()`` is the innermost).
``listen(fn)`` hears the steps of the current thread only (a service's writer thread);
``listen(fn, all_threads=True)`` hears every thread (the CLI, whose searches load encoders in
worker threads). Each finished step is logged at INFO with its time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("mm_retriever")

Listener = Callable[[str, bool], None]

_global: list[Listener] = []
_local = threading.local()


def _stack() -> list[str]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _listeners() -> list[Listener]:
    return [*_global, *getattr(_local, "listeners", ())]


def _tell(description: str, started: bool) -> None:
    for listener in _listeners():
        with contextlib.suppress(Exception):  # a display must never break the work
            listener(description, started)


@contextlib.contextmanager
def step(description: str) -> Iterator[None]:
    """Mark a step that may take more than a second (``description``: what it does)."""
    stack = _stack()
    stack.append(description)
    _tell(description, True)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        stack.pop()
        _tell(description, False)
        log.info("%s: %.1f s", description, time.perf_counter() - t0)


def current() -> str | None:
    """The innermost step running in this thread (None: none)."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def listen(listener: Listener, *, all_threads: bool = False) -> Iterator[None]:
    """Call ``listener(description, started)`` as each step starts and ends."""
    if all_threads:
        _global.append(listener)
    else:
        if not hasattr(_local, "listeners"):
            _local.listeners = []
        _local.listeners.append(listener)
    try:
        yield
    finally:
        (_global if all_threads else _local.listeners).remove(listener)
