"""Named crash points for fault-injection tests of the write path.

``MM_RETRIEVER_CRASH_AT="write:pages"`` (or ``"write:pages#3"``: the third time that point is
reached) makes the process kill itself with SIGKILL there, as a power cut or ``kill -9`` would:
no ``finally`` blocks, no flush. Unset (the normal case), ``point`` is one dictionary lookup.

``MM_RETRIEVER_CRASH_ONCE=/some/file`` makes the crash happen once across processes: the first
process to reach the point creates the file and dies; later ones (a retried worker) go on.
"""

from __future__ import annotations

import os
import signal

ENV = "MM_RETRIEVER_CRASH_AT"
ONCE_ENV = "MM_RETRIEVER_CRASH_ONCE"
_target: tuple[str, int] | None = None
_seen: dict[str, int] = {}


def _parse(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    name, _, nth = value.partition("#")
    return name, int(nth or 1)


def configure(value: str | None) -> None:
    """Use ``value`` (``None``: no crash point) instead of the environment from now on (a pool
    worker gets its parent's setting this way)."""
    global _target
    _seen.clear()
    if value:
        os.environ[ENV] = value
    else:
        os.environ.pop(ENV, None)
    _target = _parse(value or "")


def point(name: str) -> None:
    """Crash here if the environment asks for this point (and occurrence)."""
    global _target
    if _target is None:
        value = os.environ.get(ENV, "")
        if not value:
            return
        _target = _parse(value)
    if _target is None or _target[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == _target[1]:
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
