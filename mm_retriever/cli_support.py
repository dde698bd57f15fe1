"""What every CLI command shares: quiet logging (``-v`` for more, ``-q`` for less), a spinner
for each slow step (``mm_retriever.progress``), and one error line instead of a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from typer.core import TyperGroup

err_console = Console(stderr=True)

#: commands that draw no spinner: servers log instead, and MCP speaks on stdout
NO_SPINNER = frozenset({"serve", "mcp"})
#: third-party loggers that speak at INFO about things a user did not ask about
NOISY = ("httpx", "urllib3", "huggingface_hub", "filelock", "RapidOCR", "sentence_transformers")


class _State:
    verbose = False
    quiet = False


state = _State()


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """WARNING and up by default (INFO with ``verbose``, ERROR only with ``quiet``); the Hub's
    and transformers' progress bars only with ``verbose`` (our own steps show a spinner)."""
    state.verbose = state.verbose or verbose
    state.quiet = state.quiet or quiet
    level = logging.INFO if state.verbose else logging.ERROR if state.quiet else logging.WARNING
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_time=False, show_path=False)],
        force=True,
    )
    logging.getLogger("mm_retriever").setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.INFO if state.verbose else logging.ERROR)
    if not state.verbose:  # read when these libraries are imported (later, lazily)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class _Spinner:
    """One transient spinner line per running step (any thread), drawn only on a terminal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Any = None
        self._tasks: dict[tuple[int, str], Any] = {}

    def __call__(self, description: str, started: bool) -> None:
        if state.quiet:
            return
        key = (threading.get_ident(), description)
        with self._lock:
            if started:
                if self._progress is None:
                    self._progress = _new_progress()
                    self._progress.start()
                self._tasks[key] = self._progress.add_task(description, total=None)
            elif key in self._tasks:
                self._progress.remove_task(self._tasks.pop(key))
                if not self._tasks:
                    self._progress.stop()
                    self._progress = None

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            self._tasks.clear()


def _new_progress() -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # the console of the ingest progress bar (rich's global one), so the two nest
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        transient=True,
    )


@contextlib.contextmanager
def show_steps() -> Iterator[None]:
    """Draw a spinner for each slow step while the block runs (not with ``-q``)."""
    from mm_retriever.progress import listen

    spinner = _Spinner()
    try:
        with listen(spinner, all_threads=True):
            yield
    finally:
        spinner.close()


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line shown for an error, and the exit code: 2 for bad input, else 1."""
    from mm_retriever.errors import MMRetrieverError

    if isinstance(exc, MMRetrieverError):
        return str(exc), 2 if isinstance(exc, ValueError) else 1
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}", 1
    return (
        f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback, and "
        "please report it)",
        1,
    )


class CLIGroup(TyperGroup):
    """Runs a command with the step spinner; turns an exception into one line on stderr and
    exit code 2 (bad input) or 1; ``-v`` prints the traceback too."""

    def invoke(self, ctx: Any) -> Any:
        from rich.text import Text
        from typer.exceptions import Abort, Exit, TyperException

        state.verbose = state.quiet = False  # set by the options of this invocation
        args = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        name = args[0] if args else None
        steps = show_steps() if name not in NO_SPINNER else contextlib.nullcontext()
        try:
            with steps:
                return super().invoke(ctx)
        except (TyperException, Exit, Abort):
            raise
        except Exception as exc:
            if state.verbose:
                err_console.print(traceback.format_exc(), markup=False, highlight=False)
            line, code = error_line(exc)
            err_console.print(Text.assemble(("error:", "red"), f" {line}"), soft_wrap=True)
            raise Exit(code) from None
