"""Dense text encoder over sentence-transformers, with each model family's query/passage prompts.

Which prompts a model gets, first match wins:

1. ``query_prompt`` / ``document_prompt`` given to the constructor;
2. prompts the checkpoint ships in ``config_sentence_transformers.json`` (``"query"``, and
   ``"document"``, ``"passage"`` or ``"corpus"``): this is how a checkpoint declares its family;
3. only when the checkpoint says nothing: ``KNOWN_PROMPTS``, a table of exact Hugging Face ids
   (BGE English: an instruction before queries, nothing before passages; E5: ``"query: "`` /
   ``"passage: "``; MiniLM: none). The id is the one asked for, the repo id of the Hugging Face
   cache folder it resolved to, or a local folder named exactly like a known model (as
   ``huggingface-cli download ID --local-dir NAME`` makes it). Exact names only, no substrings;
4. otherwise no prompt.

The default model (a small BGE) falls back to the bundled all-MiniLM-L6-v2 when it is not
available offline; ``config()`` records the model actually loaded, so an index reopens with it.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mm_retriever.config import DEFAULT_TEXT_MODEL
from mm_retriever.device import accelerator_possible, resolve_device, resolve_dtype
from mm_retriever.encoders.hub import read_json, resolve_model_path
from mm_retriever.encoders.onnx_query import OnnxQueryEncoder, onnx_path, read_layout
from mm_retriever.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_FALLBACK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# torch: the checkpoint as loaded; onnx: its transformer exported here and run on ONNX Runtime
# (mm_retriever.encoders.onnx_backend)
BACKENDS = ("torch", "onnx")
BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："
E5 = ("query: ", "passage: ")

# Exact Hugging Face ids -> (query prompt, document prompt). Used only when the checkpoint's own
# files declare no prompts (the published BGE and E5 checkpoints do not).
KNOWN_PROMPTS: dict[str, tuple[str, str]] = {
    **{f"BAAI/bge-{s}-en-v1.5": (BGE_EN_QUERY, "") for s in ("small", "base", "large")},
    **{f"BAAI/bge-{s}-en": (BGE_EN_QUERY, "") for s in ("small", "base", "large")},
    **{f"BAAI/bge-{s}-zh-v1.5": (BGE_ZH_QUERY, "") for s in ("small", "base", "large")},
    **{f"intfloat/e5-{s}": E5 for s in ("small", "base", "large")},
    **{f"intfloat/e5-{s}-v2": E5 for s in ("small", "base", "large")},
    **{f"intfloat/multilingual-e5-{s}": E5 for s in ("small", "base", "large")},
    **{
        f"sentence-transformers/{n}": ("", "")
        for n in ("all-MiniLM-L6-v2", "all-MiniLM-L12-v2", "all-mpnet-base-v2")
    },
}

_warned_fallbacks: set[tuple[str, str]] = set()
_OFF = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Prompts:
    """The query and document prefixes a model gets, and what decided them."""

    query: str
    document: str
    source: str


def _cache_repo_id(path: str) -> str | None:
    """``ORG/NAME`` for a Hugging Face cache folder ``models--ORG--NAME/snapshots/REV``."""
    p = Path(path)
    if p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        return p.parent.parent.name.removeprefix("models--").replace("--", "/")
    return None


def checkpoint_prompts(path: str) -> tuple[str | None, str | None]:
    """(query, document) prompts a checkpoint declares in config_sentence_transformers.json."""
    cfg = read_json(Path(path) / "config_sentence_transformers.json") or {}
    prompts = cfg.get("prompts") or {}
    if not isinstance(prompts, dict):
        return None, None
    query = prompts.get("query")
    document = next(
        (prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k) is not None), None
    )
    return query, document


def select_prompts(
    model: str,
    path: str,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
) -> Prompts:
    """The prompts for checkpoint ``model`` at ``path`` (see the module docstring for the order)."""
    if query_prompt is not None and document_prompt is not None:
        return Prompts(query_prompt, document_prompt, "arguments")
    ckpt_query, ckpt_doc = checkpoint_prompts(path)
    if ckpt_query is not None or ckpt_doc is not None:
        return Prompts(
            query_prompt if query_prompt is not None else ckpt_query or "",
            document_prompt if document_prompt is not None else ckpt_doc or "",
            "checkpoint config_sentence_transformers.json",
        )
    folder = Path(path).name
    candidates = [model, _cache_repo_id(path)]
    candidates += [known for known in KNOWN_PROMPTS if known.split("/", 1)[1] == folder]
    for cand in candidates:
        if cand in KNOWN_PROMPTS:
            q, d = KNOWN_PROMPTS[cand]
            return Prompts(
                query_prompt if query_prompt is not None else q,
                document_prompt if document_prompt is not None else d,
                f"known model {cand}",
            )
    return Prompts(query_prompt or "", document_prompt or "", "none")


def query_onnx_enabled() -> bool:
    """Whether queries may be embedded by the model's ONNX export (``MM_RETRIEVER_QUERY_ONNX``,
    default on; ``0`` keeps every query on sentence-transformers)."""
    return os.environ.get("MM_RETRIEVER_QUERY_ONNX", "1").strip().lower() not in _OFF


def _export_for_queries(st: Any, path: str) -> None:
    """Export the transformer of ``st`` once (needs the ``onnx`` package; skipped without it),
    so later processes embed queries without importing torch."""
    target = onnx_path(path)
    if target.is_file():
        return
    try:
        import onnx  # noqa: F401
    except ImportError:
        logger.info("no ONNX export for fast query encoding: the onnx package is not installed")
        return
    from mm_retriever.encoders.onnx_backend import export
    from mm_retriever.progress import step

    try:
        prepare = getattr(st, "preprocess", None) or st.tokenize
        sample = prepare(["an example sentence to trace the model", "another one"])
        with step("exporting the text model to ONNX for fast queries (once)"):
            export(st[0].auto_model, dict(sample), target)
    except Exception as e:  # the torch model still works: queries stay on it
        logger.warning("could not export %s to ONNX for query encoding: %s", path, e)


def _cpu_auto_dtype() -> Any:
    """dtype 'auto' on the CPU: bfloat16 where AMX multiplies it in hardware (2.8x faster for
    MiniLM on 1 core; embeddings' cosine to float32 >= 0.998), float32 elsewhere."""
    import torch

    from mm_retriever.device import cpu_has_amx

    return torch.bfloat16 if cpu_has_amx() else torch.float32


def _warn_fallback(model: str, fallback: str, error: Exception) -> None:
    if (model, fallback) in _warned_fallbacks:
        return
    _warned_fallbacks.add((model, fallback))
    logger.warning(
        "text model '%s' is not available here, using '%s' instead; to use it, run "
        "`huggingface-cli download %s` on a machine with internet (or pass a local folder), "
        "or set fallback=None to make this an error",
        model,
        fallback,
        model,
    )
    logger.debug("why '%s' is unavailable: %s", model, error)


class SentenceTransformerEncoder:
    """A sentence-transformers model (BGE, E5, MiniLM, ...) with its family's prompts applied.

    ``encode_query`` / ``encode_document`` return float32 ``[n, dim]`` L2-normalised arrays.
    Queries longer than ``max_length`` tokens are truncated with a warning. ``backend="onnx"``
    runs the transformer on ONNX Runtime (exported locally once; needs the ``onnx`` extra) with
    the same embeddings.
    """

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        *,
        fallback: str | None = DEFAULT_FALLBACK_MODEL,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 32,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        max_length: int | None = None,
        backend: str = "torch",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device_name, self.dtype_name, self.batch_size = device, dtype, batch_size
        self.backend = backend
        self._device: Any = None
        self._dtype: Any = None
        # the CPU for sure: torch is imported only when the model is (not for ONNX queries)
        self._cpu_only = str(device) == "cpu" or (
            device in (None, "auto") and not accelerator_possible()
        )
        if not self._cpu_only:
            _ = self.dtype  # an accelerator asked for or possible: resolve (and check) it now
        model = str(model)
        self.requested_model = model

        try:
            path = resolve_model_path(model)
            self.model_name = model
        except ModelUnavailableError as e:
            if not fallback or fallback == model:
                raise
            try:
                path = resolve_model_path(fallback)
            except ModelUnavailableError:
                e.add_note(f"the fallback '{fallback}' is not available either")
                raise e from None
            _warn_fallback(model, fallback, e)
            self.model_name = fallback
        self.path = path
        self.prompts = select_prompts(self.model_name, path, query_prompt, document_prompt)
        logger.info(
            "text model %s: query prompt %r, document prompt %r (from %s)",
            self.model_name,
            self.prompts.query,
            self.prompts.document,
            self.prompts.source,
        )
        self._lock = threading.Lock()
        self._model: SentenceTransformer | None = None
        self._query_onnx: Any = None  # OnnxQueryEncoder, False when it cannot be had
        self.layout = read_layout(path)  # None: only the loaded model can say what it is
        self.max_length = 0  # set below
        if max_length is not None:
            limit = self._position_limit()
            if max_length < 1 or (limit is not None and max_length > limit):
                raise ValueError(f"max_length must be between 1 and {limit}, got {max_length}")
        if self.layout is not None:  # the files say it: nothing loaded
            self.max_length = max_length or self.layout.max_length
            self.dim = self.layout.dim
        else:
            model = self.model
            if max_length is not None:
                model.max_seq_length = max_length
            self.max_length = int(model.max_seq_length or model.tokenizer.model_max_length)
            get_dim = (
                getattr(model, "get_embedding_dimension", None)
                or model.get_sentence_embedding_dimension
            )
            self.dim = int(get_dim())

    @property
    def device(self) -> torch.device:
        """The torch device (resolved on first use)."""
        if self._device is None:
            self._device = resolve_device(self.device_name)
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype: as given, else float32 on the CPU (bfloat16 with AMX) and the
        accelerator's half type on a GPU."""
        if self._dtype is None:
            dtype = resolve_dtype(self.dtype_name, self.device)
            cpu_auto = self.dtype_name in (None, "auto") and self.device.type == "cpu"
            if cpu_auto and self.backend == "torch":
                dtype = _cpu_auto_dtype()
            self._dtype = dtype
        return self._dtype

    @property
    def model(self) -> SentenceTransformer:
        """The sentence-transformers model, loaded on first use (documents to encode, or a
        query when no ONNX export of it is at hand)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = self._load(self.path)
                    if self.max_length:  # 0 while the constructor asks the model
                        model.max_seq_length = self.max_length
                    self._model = model
        return self._model

    def _load(self, path: str) -> SentenceTransformer:
        from mm_retriever.progress import step

        with step(f"loading text model {self.model_name}"):
            import torch
            from sentence_transformers import SentenceTransformer

            try:
                st = SentenceTransformer(path, device=str(self.device), local_files_only=True)
            except (OSError, ValueError) as e:
                raise ModelUnavailableError(
                    self.model_name, f"found at {path} but it does not load: {e}"
                ) from e
        st.default_prompt_name = None  # the prompts are applied here, explicitly
        if self.backend == "torch" and self.layout is not None and query_onnx_enabled():
            _export_for_queries(st, path)  # float32 weights: before any dtype change
        if self.dtype != torch.float32:
            st.to(self.dtype)
        st.eval()
        if self.backend == "onnx":
            if self.device.type != "cpu" or self.dtype != torch.float32:
                raise ValueError("backend='onnx' runs float32 on the CPU (device='cpu')")
            from mm_retriever.encoders.onnx_backend import use_onnx

            use_onnx(st, path, threads=torch.get_num_threads())
        return st

    def _position_limit(self) -> int | None:
        """The most tokens the underlying transformer takes (max_position_embeddings)."""
        if self.layout is not None:
            return self.layout.position_limit
        auto_model = getattr(self.model[0], "auto_model", None)
        cfg = getattr(auto_model, "config", None)
        if cfg is None:
            return None
        if hasattr(cfg, "get_text_config"):
            cfg = cfg.get_text_config()
        n = getattr(cfg, "max_position_embeddings", None)
        return int(n) if isinstance(n, int) and n > 0 else None

    # ------------------------------------------------------------------ encoding
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text takes (special tokens included), before any truncation."""
        if not texts:
            return []
        fast = self._query_encoder()
        if fast is not None:
            return [len(ids) for ids in fast.token_ids(list(texts))]
        enc = self.model.tokenizer(
            list(texts), add_special_tokens=True, truncation=False, verbose=False
        )
        return [len(ids) for ids in enc["input_ids"]]

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.asarray(out, dtype=np.float32)  # bfloat16 rounding: norms off by ~1e-3
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out)

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; the query prompt applied, long queries truncated."""
        texts = [self.prompts.query + t for t in texts]
        lengths = self.count_tokens(texts)
        too_long = [n for n in lengths if n > self.max_length]
        if too_long:
            warnings.warn(
                f"{len(too_long)} quer{'y' if len(too_long) == 1 else 'ies'} longer than the "
                f"text model's limit ({max(too_long)} > {self.max_length} tokens) truncated to "
                f"{self.max_length} tokens ({self.model_name})",
                UserWarning,
                stacklevel=2,
            )
        fast = self._query_encoder()
        if fast is not None:
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            return fast.encode(texts)
        return self._encode(texts)

    def _query_encoder(self) -> Any:
        """The torch-free query encoder (ONNX export + tokenizers) while the torch model is not
        loaded in this process and an export of it exists; else None."""
        if self._query_onnx is None:
            self._query_onnx = False
            if (
                self._model is None
                and self.layout is not None
                and self._cpu_only
                and query_onnx_enabled()
            ):
                target = onnx_path(self.path)
                if target.is_file():
                    from mm_retriever.progress import step

                    try:
                        with step(f"loading query encoder {self.model_name}"):
                            encoder = OnnxQueryEncoder(target, Path(self.path), self.layout)
                        self._query_onnx = encoder
                    except Exception as e:  # a damaged export: sentence-transformers answers
                        logger.warning("ONNX query encoder unusable (%s): %s", target, e)
        if self._query_onnx is False or self._model is not None:
            return None
        return self._query_onnx

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; the document prompt applied (long texts truncated)."""
        return self._encode([self.prompts.document + t for t in texts])

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this exact encoder (the model actually loaded)."""
        return {
            "model": self.model_name,
            "fallback": None,
            "device": self.device_name,
            "dtype": self.dtype_name,
            "batch_size": self.batch_size,
            "query_prompt": self.prompts.query,
            "document_prompt": self.prompts.document,
            "max_length": self.max_length,
            "backend": self.backend,
        }

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEncoder(model={self.model_name!r}, dim={self.dim}, "
            f"device={str(self.device)!r})"
        )
