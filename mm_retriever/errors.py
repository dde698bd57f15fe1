"""Exceptions with messages that say what went wrong and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class MMRetrieverError(Exception):
    """Base class for mm-retriever errors."""


class MissingExtraError(MMRetrieverError, ImportError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        cmd = f'uv pip install "mm-retriever[{extra}]"' if extra else f"uv pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}. Install it with: {cmd}")


def check_extra(modules: Iterable[tuple[str, str]], extra: str | None, purpose: str) -> None:
    """MissingExtraError naming ``extra`` when one of ``modules`` ((module, package) pairs) is
    not installed. Looked up without importing, so an error inside an installed package
    surfaces unchanged when it is imported."""
    import importlib.util

    for module, package in modules:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            if importlib.util.find_spec(".".join(parts[:i])) is None:
                raise MissingExtraError(package, extra=extra, purpose=purpose)


def require_extra(module: str, package: str, extra: str | None, purpose: str) -> Any:
    """Import ``module`` or raise MissingExtraError naming ``extra`` (or ``package``)."""
    import importlib

    check_extra([(module, package)], extra, purpose)
    return importlib.import_module(module)


class ModelUnavailableError(MMRetrieverError):
    """Model weights cannot be found locally and cannot be downloaded."""

    def __init__(self, model: str, detail: str = "") -> None:
        self.model = model
        if _looks_like_hub_id(model):
            msg = (
                f"model '{model}' is not available: not a local folder and not in the Hugging "
                "Face cache, and the Hub cannot be reached. Fix: on a machine with internet run "
                f"`huggingface-cli download {model}` (then copy ~/.cache/huggingface, or set "
                "HF_HOME), or pass a local folder that holds the checkpoint"
            )
        else:
            msg = (
                f"model '{model}' is not available: no checkpoint folder there. Fix: pass the "
                "folder that holds the checkpoint (config.json and weights), or a Hugging Face id"
            )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


def _looks_like_hub_id(model: str) -> bool:
    """'org/name' or 'name': no leading '/', '.', '~' and at most one '/'."""
    return not model.startswith(("/", ".", "~")) and model.count("/") <= 1 and "\\" not in model


class UnsupportedModelError(MMRetrieverError, ValueError):
    """A checkpoint was found but is not a kind this encoder can run (per its config.json)."""

    def __init__(self, model: str, detail: str) -> None:
        self.model = model
        super().__init__(f"model '{model}' cannot be used here: {detail}")


class IngestError(MMRetrieverError):
    """A file could not be read as a document (corrupt, encrypted, empty, unsupported)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class EmptyQueryError(MMRetrieverError, ValueError):
    """The query has no text and no image."""

    def __init__(self) -> None:
        super().__init__(
            "the query is empty: give a question (or an image for the page/figure legs)"
        )


class RegistryError(MMRetrieverError, KeyError):
    """Unknown or duplicate registry name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class IndexCorruptError(MMRetrieverError):
    """A table of the index is missing or unreadable. Nothing was changed."""

    def __init__(self, uri: str, table: str, detail: str) -> None:
        self.uri = uri
        self.table = table
        super().__init__(
            f"the index at {uri} is damaged: table '{table}' cannot be read ({detail}). "
            f"Nothing was changed. Inspect it with `mm-retriever doctor --index {uri}`; "
            "restore the table from a backup, or rebuild the index from the source files"
        )


class IndexReadOnlyError(MMRetrieverError, PermissionError):
    """A write was asked of an index that cannot be written here (read-only mount/credentials)."""

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = uri
        super().__init__(
            f"the index at {uri} cannot be written here ({detail}); it can still be opened "
            "and searched"
        )


class WriterBusyError(MMRetrieverError):
    """Another writer holds the index's write lock or lease."""

    def __init__(self, uri: str, detail: str) -> None:
        self.uri = uri
        super().__init__(f"another writer is writing to the index at {uri}: {detail}")


class InvalidQueryError(MMRetrieverError, ValueError):
    """A query, ``k`` or filter value that cannot be searched; the message says why."""


class ConfigError(MMRetrieverError, ValueError):
    """A configuration file that cannot be read or does not hold a valid configuration."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"config file {path}: {detail}")
