"""Image-text dual encoders over transformers: CLIP and SigLIP, in one embedding space.

The transformers classes come from the checkpoint's ``config.json`` ``model_type`` (``clip`` or
``siglip``), so either wrapper loads either kind correctly; the two wrappers differ only in
their default model. SigLIP text is padded to its fixed length, as it was trained.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from mm_retriever.config import DEFAULT_CLIP_MODEL
from mm_retriever.encoders.base import batches, checkpoint_repr, runtime_config, set_runtime
from mm_retriever.encoders.hub import inspect_checkpoint
from mm_retriever.errors import ModelUnavailableError, UnsupportedModelError

logger = logging.getLogger(__name__)

DEFAULT_SIGLIP_MODEL = "google/siglip-base-patch16-224"

# config.json model_type -> (model class, processor class, text padding) in transformers.
DUAL_ENCODER_CLASSES: dict[str, tuple[str, str, str]] = {
    "clip": ("CLIPModel", "CLIPProcessor", "longest"),
    "siglip": ("SiglipModel", "SiglipProcessor", "max_length"),
}


def _features(out: Any) -> Any:
    """The projected embedding from get_*_features (a tensor, or an output's pooler_output)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected output from get_*_features: {type(out).__name__}")
    return pooled


def _load_processor(proc_cls: type, path: str) -> Any:
    """The processor with PIL image preprocessing (as the models were trained), where offered."""
    try:
        return proc_cls.from_pretrained(path, backend="pil")
    except TypeError:  # transformers without image-processor backends
        return proc_cls.from_pretrained(path)


class ImageTextEncoder:
    """CLIP/SigLIP-style dual encoder: text queries and images as L2-normalised float32 vectors."""

    default_model = DEFAULT_CLIP_MODEL

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 16,
    ) -> None:
        from mm_retriever.progress import step

        self.model_name = str(model or self.default_model)
        with step(f"loading image-text model {self.model_name}"):
            self._load(device, dtype, batch_size)

    def _load(self, device: str, dtype: str | None, batch_size: int) -> None:
        import transformers

        set_runtime(self, device, dtype, batch_size)
        self.checkpoint = inspect_checkpoint(self.model_name)
        self.model_type = self.checkpoint.model_type
        if self.model_type not in DUAL_ENCODER_CLASSES:
            raise UnsupportedModelError(
                self.model_name,
                f"its config.json model_type is {self.model_type!r}; image-text encoders "
                f"support {', '.join(sorted(DUAL_ENCODER_CLASSES))}",
            )
        model_cls_name, proc_cls_name, self._padding = DUAL_ENCODER_CLASSES[self.model_type]
        model_cls = getattr(transformers, model_cls_name)
        proc_cls = getattr(transformers, proc_cls_name)
        path = self.checkpoint.path
        try:
            self._model = model_cls.from_pretrained(path, dtype=self.dtype).to(self.device).eval()
            self._processor = _load_processor(proc_cls, path)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                self.model_name, f"found at {path} but it does not load: {e}"
            ) from e
        cfg = self._model.config
        self.dim = int(getattr(cfg, "projection_dim", None) or cfg.text_config.hidden_size)
        self.max_length = int(cfg.text_config.max_position_embeddings)
        logger.info("image-text model %s: %s on %s", self.model_name, model_cls_name, self.device)

    def _check_length(self, texts: list[str]) -> None:
        ids = self._processor.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        too_long = [len(x) for x in ids if len(x) > self.max_length]
        if too_long:
            warnings.warn(
                f"{len(too_long)} quer{'y' if len(too_long) == 1 else 'ies'} longer than the "
                f"image-text model's limit ({max(too_long)} > {self.max_length} tokens) "
                f"truncated ({self.model_name})",
                UserWarning,
                stacklevel=3,
            )

    def _normalised(self, feats: Any) -> np.ndarray:
        import torch

        feats = torch.nn.functional.normalize(_features(feats).float(), dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """[n, dim] float32 L2-normalised text embeddings (long texts truncated with a warning)."""
        import torch

        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._check_length(texts)
        out = []
        for chunk in batches(texts, self.batch_size):
            batch = self._processor(
                text=chunk,
                padding=self._padding,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            # what the processor gives (SigLIP: input_ids only), minus BERT-style extras
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                out.append(self._normalised(self._model.get_text_features(**inputs)))
        return np.concatenate(out)

    def encode_document(self, images: Sequence[Image.Image]) -> np.ndarray:
        """[n, dim] float32 L2-normalised image embeddings."""
        import torch

        if isinstance(images, Image.Image):
            raise TypeError("pass a list of images, not a single image")
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for part in batches(images, self.batch_size):
            chunk = [im.convert("RGB") for im in part]
            batch = self._processor(images=chunk, return_tensors="pt").to(self.device)
            pixels = batch["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                out.append(self._normalised(self._model.get_image_features(pixel_values=pixels)))
        return np.concatenate(out)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder."""
        return runtime_config(self)

    def __repr__(self) -> str:
        return checkpoint_repr(self)


class CLIPEncoder(ImageTextEncoder):
    """CLIP by default (``openai/clip-vit-base-patch32``); the class follows the checkpoint."""

    default_model = DEFAULT_CLIP_MODEL


class SigLIPEncoder(ImageTextEncoder):
    """SigLIP by default (``google/siglip-base-patch16-224``); the class follows the checkpoint."""

    default_model = DEFAULT_SIGLIP_MODEL
