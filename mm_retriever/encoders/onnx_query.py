"""Query embeddings without torch: a text model's ONNX export on ONNX Runtime, tokenised by the
checkpoint's own fast tokenizer (``tokenizer.json``, the ``tokenizers`` library).

Opening an index and answering its first question then costs an ONNX session (a fraction of a
second) instead of importing torch, transformers and sentence-transformers and loading the
model (several seconds). It covers plain sentence-transformers checkpoints, a Transformer
followed by Pooling (CLS, mean, max or last token) and optionally Normalize (MiniLM, BGE, E5,
GTE, ...); anything else is left to sentence-transformers. The export itself is made with torch
(``mm_retriever.encoders.onnx_backend``) the first time the model is loaded for documents.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
}


def export_key(path: str) -> str:
    """Identifies a checkpoint's weights: folder, and size and time of each weight file."""
    folder = Path(path).resolve()
    parts = [str(folder)]
    for f in sorted(folder.iterdir()):
        if f.suffix in {".safetensors", ".bin", ".json"} and f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def onnx_path(path: str) -> Path:
    """Where the ONNX export of the checkpoint at ``path`` is kept (made once, by torch)."""
    from mm_retriever.cache import cache_root

    return cache_root() / "onnx" / export_key(path) / "model.onnx"


@dataclass(frozen=True)
class Layout:
    """What a plain sentence-transformers checkpoint computes, read from its files."""

    pooling: str  # cls, mean, max or lasttoken
    normalize: bool
    dim: int
    max_length: int
    position_limit: int | None
    lowercase: bool


def _json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_layout(path: str | Path) -> Layout | None:
    """The checkpoint's pooling, normalisation, dimension and length limit, or None when its
    files do not say them all or it holds modules beyond Transformer, Pooling and Normalize."""
    folder = Path(path)
    modules = _json(folder / "modules.json")
    config = _json(folder / "config.json")
    st_config = _json(folder / "sentence_bert_config.json")
    if not (isinstance(modules, list) and isinstance(config, dict) and isinstance(st_config, dict)):
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    if modules[0].get("path", "") not in ("", "."):
        return None
    pooling = _json(folder / str(modules[1].get("path", "")) / "config.json")
    if not isinstance(pooling, dict) or pooling.get("include_prompt", True) is False:
        return None
    modes = [name for key, name in _POOLING_KEYS.items() if pooling.get(key)]
    extra = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if len(modes) != 1 or len(extra) != 1 or not (folder / "tokenizer.json").is_file():
        return None
    dim = pooling.get("word_embedding_dimension") or config.get("hidden_size")
    max_length = st_config.get("max_seq_length")
    if not isinstance(dim, int) or not isinstance(max_length, int):
        return None
    limit = config.get("max_position_embeddings")
    return Layout(
        pooling=modes[0],
        normalize=kinds[-1] == "Normalize",
        dim=dim,
        max_length=max_length,
        position_limit=limit if isinstance(limit, int) and limit > 0 else None,
        lowercase=bool(st_config.get("do_lower_case", False)),
    )


class OnnxQueryEncoder:
    """Embeds short texts with an exported transformer and the checkpoint's tokenizer, pooled
    and normalised as sentence-transformers does (cosine > 0.9999 to its float32 output)."""

    def __init__(self, onnx_file: Path, folder: Path, layout: Layout, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.layout = layout
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [i.name for i in self.session.get_inputs()]

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (special tokens included), not truncated."""
        if self.layout.lowercase:
            texts = [t.lower() for t in texts]
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> np.ndarray:
        """[n, dim] float32 embeddings; texts longer than ``max_length`` tokens are truncated
        (keeping the final special token, as the Hugging Face tokenizer does)."""
        limit = self.layout.max_length
        rows = []
        for ids in self.token_ids(texts):
            if len(ids) > limit:
                ids = ids[: limit - 1] + ids[-1:]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})
        out = _pool(np.asarray(hidden, dtype=np.float32), mask, self.layout.pooling)
        if self.layout.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out, dtype=np.float32)


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0].copy()
    if mode == "lasttoken":
        last = mask.sum(axis=1) - 1
        return hidden[np.arange(len(hidden)), last].copy()
    m = mask[:, :, None].astype(np.float32)
    if mode == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1)
    return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
