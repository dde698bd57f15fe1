"""Saved first stages: a two-stage index's in-RAM structures, kept next to the table they mirror.

``states_for(store, table)`` is where a leg saves and loads them, the same three calls
(``has``/``save``/``load``) for every index: a local index keeps them in folders (below), memory-
mapped on load; an index on object storage keeps them as rows of its ``page_index_state`` table
(``store.array_states``), written through the store with the index's storage options.

One folder per saved state, ``<root>/v<table version>-<config hash>/``: one ``.npy`` per array
plus ``meta.json``. A state is written to a temporary folder and renamed into place, so a reader
never sees half of one; it is loaded memory-mapped copy-on-write, so loading reads only what
queries touch and later in-place edits stay private to the process. After a save, older states
of the same root are removed. Only writers save (and replace a damaged state); loading changes
nothing on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mm_retriever.store import LanceDBStore

log = logging.getLogger(__name__)


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _states(root: Path) -> list[tuple[int, str, Path]]:
    out = []
    for path in root.glob("v*-*"):
        version, _, key = path.name[1:].partition("-")
        if path.is_dir() and version.isdigit() and (path / "meta.json").exists():
            out.append((int(version), key, path))
    return sorted(out)


def _readable(path: Path) -> bool:
    try:
        meta = json.loads((path / "meta.json").read_text())
        for name in meta["arrays"]:
            np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return False
    return True


def has_state(root: Path, config: dict[str, Any]) -> bool:
    """Whether the newest saved state for ``config`` is there and readable."""
    key = config_key(config)
    mine = (
        [path for _, saved_key, path in _states(root) if saved_key == key] if root.exists() else []
    )
    return bool(mine) and _readable(mine[-1])


def save_state(
    root: Path, version: int, config: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Path:
    """Write ``arrays`` as the state of table ``version`` under ``config``; drop older states."""
    key = config_key(config)
    target = root / f"v{version}-{key}"
    if target.exists():
        if _readable(target):
            return target
        shutil.rmtree(target, ignore_errors=True)  # damaged: replaced by this save
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.asarray(arr), allow_pickle=False)
        meta = {"version": version, "config": config, "arrays": sorted(arrays)}
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.replace(tmp, target)
    except OSError:
        if target.exists():  # another process saved the same state first
            return target
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old_version, _, path in _states(root):
        if old_version < version:
            shutil.rmtree(path, ignore_errors=True)
    return target


def load_state(
    root: Path, max_version: int, config: dict[str, Any]
) -> tuple[int, dict[str, np.ndarray]] | None:
    """The newest saved state for ``config`` at a table version <= ``max_version`` (or None)."""
    key = config_key(config)
    for version, saved_key, path in reversed(_states(root)):
        if saved_key != key or version > max_version:
            continue
        try:
            meta = json.loads((path / "meta.json").read_text())
            arrays = {
                name: np.load(path / f"{name}.npy", mmap_mode="c", allow_pickle=False)
                for name in meta["arrays"]
            }
        except (OSError, ValueError, KeyError) as exc:  # removed meanwhile or damaged
            log.warning("ignoring the unreadable saved page-leg state %s: %s", path, exc)
            continue  # a reader never writes: the next save replaces it
        return version, arrays
    return None


class FolderStates:
    """Saved states of one leg in a local folder (``.npy`` files, loaded memory-mapped)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def has(self, config: dict[str, Any]) -> bool:
        return has_state(self.root, config)

    def save(self, version: int, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        save_state(self.root, version, config, arrays)

    def load(
        self, max_version: int, config: dict[str, Any]
    ) -> tuple[int, dict[str, np.ndarray]] | None:
        return load_state(self.root, max_version, config) if self.root.exists() else None


class TableStates:
    """Saved states of one leg as rows of the index's ``page_index_state`` table."""

    def __init__(self, store: LanceDBStore, leg: str) -> None:
        self.store, self.leg = store, leg

    def has(self, config: dict[str, Any]) -> bool:
        return self.store.has_state(self.leg, config_key(config))

    def save(self, version: int, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        try:
            self.store.save_state(self.leg, version, config_key(config), arrays)
        except (RuntimeError, ValueError) as exc:  # the store's own errors, as a disk's
            raise OSError(str(exc)) from exc

    def load(
        self, max_version: int, config: dict[str, Any]
    ) -> tuple[int, dict[str, np.ndarray]] | None:
        try:
            return self.store.load_state(self.leg, max_version, config_key(config))
        except Exception as exc:  # a damaged state costs a rebuild in RAM, not an answer
            log.warning("ignoring the unreadable saved state of %s: %s", self.leg, exc)
            return None


def states_for(store: LanceDBStore, table: str) -> FolderStates | TableStates:
    """Where the leg reading ``table`` keeps its saved states in ``store``'s index."""
    if store.path is not None:
        return FolderStates(store.path / "_page_index" / table)
    return TableStates(store, table)
