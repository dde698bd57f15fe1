"""Page-image encoder over colpali-engine: ColPali, ColQwen2/2.5, ColIdefics3 (ColSmol), ...

The model and processor classes come from the checkpoint's ``config.json`` ``model_type`` (for a
PEFT adapter, its base model's), never from a substring of the model's name. Outputs are one
float32 CPU tensor per item with padding rows removed (by the attention mask), so the stored
multivectors hold exactly the rows colpali-engine's ``score_multi_vector`` counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from mm_retriever.config import DEFAULT_PAGE_MODEL
from mm_retriever.encoders.base import batches, checkpoint_repr, runtime_config, set_runtime
from mm_retriever.encoders.hub import inspect_checkpoint
from mm_retriever.errors import MissingExtraError, ModelUnavailableError, UnsupportedModelError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# config.json model_type -> (model class, processor class) in colpali_engine.models.
COLPALI_CLASSES: dict[str, tuple[str, str]] = {
    "paligemma": ("ColPali", "ColPaliProcessor"),
    "qwen2_vl": ("ColQwen2", "ColQwen2Processor"),
    "qwen2_5_vl": ("ColQwen2_5", "ColQwen2_5_Processor"),
    "idefics3": ("ColIdefics3", "ColIdefics3Processor"),
    "gemma3": ("ColGemma3", "ColGemmaProcessor3"),
    "modernvbert": ("ColModernVBert", "ColModernVBertProcessor"),
    "qwen3_vl": ("ColQwen3", "ColQwen3Processor"),
    "qwen3_5": ("ColQwen3_5", "ColQwen3_5Processor"),
    "qwen2_5_omni_thinker": ("ColQwen2_5Omni", "ColQwen2_5OmniProcessor"),
}


def colpali_classes(model_type: str | None, model: str = "") -> tuple[type, type]:
    """The colpali-engine (model, processor) classes for a checkpoint's ``model_type``."""
    if model_type not in COLPALI_CLASSES:
        known = ", ".join(sorted(COLPALI_CLASSES))
        raise UnsupportedModelError(
            model or str(model_type),
            f"its config.json model_type is {model_type!r}, not a ColPali-family type that "
            f"colpali-engine supports ({known})",
        )
    try:
        import colpali_engine.models as cm
    except ImportError as e:
        raise MissingExtraError("colpali-engine", purpose="the page-image leg") from e
    model_name, proc_name = COLPALI_CLASSES[model_type]
    model_cls = getattr(cm, model_name, None)
    proc_cls = getattr(cm, proc_name, None)
    if model_cls is None or proc_cls is None:
        raise UnsupportedModelError(
            model or model_name,
            f"this colpali-engine has no {model_name}; "
            "upgrade it: uv pip install -U colpali-engine",
        )
    return model_cls, proc_cls


def _materialize_unloaded(model: Any) -> None:
    """Give parameters the checkpoint does not hold (left on the meta device) real storage.

    ColPali checkpoints leave out the language model head (``_keys_to_ignore_on_load_missing``);
    its logits are never used for embeddings. A head shaped like the input embeddings is tied
    to them, as in the base model; anything else gets zeros.
    """
    import torch

    missing = [(n, p) for n, p in model.named_parameters() if p.is_meta]
    if not missing:
        return
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    for name, param in missing:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        if emb is not None and tuple(param.shape) == tuple(emb.weight.shape):
            setattr(module, attr, emb.weight)
        else:
            real = torch.zeros(param.shape, dtype=param.dtype)
            setattr(module, attr, torch.nn.Parameter(real, requires_grad=False))
        logger.debug("parameter %s not in the checkpoint; filled (unused for embeddings)", name)


def _use_pil_image_processor(processor: Any, folder: str) -> None:
    """Swap in the PIL variant of the image processor (as the models were trained), if any."""
    try:
        from transformers import AutoImageProcessor

        pil = AutoImageProcessor.from_pretrained(folder, backend="pil")
    except (OSError, ValueError, TypeError, ImportError):  # older transformers: no backends
        return
    current = type(processor.image_processor).__name__
    if type(pil).__name__ in (current, current + "Pil"):
        processor.image_processor = pil


class ColPaliEncoder:
    """Late-interaction page encoder: one vector per query token / image patch.

    ``attn_implementation`` None means eager attention off CUDA (SDPA gives NaN rows for
    left-padded batches on CPU) and the transformers default on CUDA.
    """

    def __init__(
        self,
        model: str = DEFAULT_PAGE_MODEL,
        *,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int = 4,
        attn_implementation: str | None = None,
    ) -> None:
        from mm_retriever.progress import step

        self.model_name = str(model)
        self.attn_implementation = attn_implementation
        with step(f"loading page model {self.model_name}"):
            set_runtime(self, device, dtype, batch_size)
            self.checkpoint = inspect_checkpoint(self.model_name)
            self.model_type = self.checkpoint.model_type
            model_cls, proc_cls = colpali_classes(self.model_type, self.model_name)
            attn = attn_implementation or ("eager" if self.device.type != "cuda" else None)
            self._model = self._load_model(model_cls, attn)
            self._processor = self._load_processor(proc_cls)
        self.dim = int(getattr(self._model, "dim", 128))
        logger.info(
            "page model %s: %s (model_type %s) on %s, %s",
            self.model_name,
            model_cls.__name__,
            self.model_type,
            self.device,
            self.dtype,
        )

    def _load_model(self, model_cls: type, attn: str | None) -> Any:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if attn:
            kwargs["attn_implementation"] = attn
        try:
            model = model_cls.from_pretrained(self.checkpoint.path, **kwargs)
        except (OSError, ValueError) as e:
            raise ModelUnavailableError(
                self.model_name, f"found at {self.checkpoint.path} but it does not load: {e}"
            ) from e
        _materialize_unloaded(model)
        return model.to(self.device).eval()

    def _load_processor(self, proc_cls: type) -> Any:
        folders = [self.checkpoint.path]
        if self.checkpoint.base_path:
            folders.append(self.checkpoint.base_path)
        errors = []
        for folder in folders:
            try:
                processor = proc_cls.from_pretrained(folder)
            except (OSError, ValueError, TypeError) as e:
                errors.append(f"{folder}: {e}")
                continue
            _use_pil_image_processor(processor, folder)
            return processor
        raise ModelUnavailableError(self.model_name, "no processor loads: " + "; ".join(errors))

    # ------------------------------------------------------------------ encoding
    def _forward(self, batch: Any) -> list[torch.Tensor]:
        import torch

        batch = batch.to(self.device)
        with torch.inference_mode():
            out = self._model(**batch)
        mask = batch["attention_mask"].bool()
        rows = [emb[m].float().cpu() for emb, m in zip(out, mask, strict=True)]
        if any(torch.isnan(r).any() for r in rows):
            raise RuntimeError(
                f"{self.model_name} produced NaN embeddings on {self.device}; "
                "try attn_implementation='eager' or dtype='float32'"
            )
        return rows

    def encode_query(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """One [n_tokens, dim] float32 CPU tensor per query (padding removed)."""
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        out: list[torch.Tensor] = []
        for batch in batches(texts, self.batch_size):
            chunk = list(batch)
            out.extend(self._forward(self._processor.process_queries(chunk)))
        return out

    def encode_document(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """One [n_patches, dim] float32 CPU tensor per page image (padding removed)."""
        if isinstance(images, Image.Image):
            raise TypeError("pass a list of images, not a single image")
        out: list[torch.Tensor] = []
        for batch in batches(images, self.batch_size):
            chunk = [im.convert("RGB") for im in batch]
            out.extend(self._forward(self._processor.process_images(chunk)))
        return out

    def score(self, queries: Sequence[torch.Tensor], docs: Sequence[torch.Tensor]) -> torch.Tensor:
        """MaxSim scores [n_queries, n_docs] (see ``mm_retriever.multivector.scoring.maxsim``)."""
        from mm_retriever.multivector.scoring import maxsim

        return maxsim(list(queries), list(docs))

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this encoder."""
        return {**runtime_config(self), "attn_implementation": self.attn_implementation}

    def __repr__(self) -> str:
        return checkpoint_repr(self)
