"""The ``onnx`` backend of the text encoder: the transformer runs on ONNX Runtime.

The checkpoint's transformer is exported once, here, from the local weights (no Hub) to
``$MM_RETRIEVER_CACHE/onnx/<key>/model.onnx`` (``key``: the checkpoint folder and its weight
files' sizes and times), then swapped in for the torch module inside the loaded
``SentenceTransformer``: tokenization, length-sorted batching, pooling and normalisation stay
sentence-transformers' own, so embeddings match the torch backend's (cosine > 0.9999 on
MiniLM). sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, which pins
transformers < 4.58 (this project uses 5.x); exporting needs only the ``onnx`` package
(``pip install 'mm-retriever[onnx]'``).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mm_retriever.encoders.onnx_query import onnx_path
from mm_retriever.errors import MissingExtraError

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export(transformer: Any, sample: dict[str, Any], target: Path) -> list[str]:
    """Export ``transformer`` (a Hugging Face encoder) to ``target``; returns its input names."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise MissingExtraError("onnx", "onnx", purpose="the text encoder's backend='onnx'") from e
    names = [n for n in INPUTS if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, args, strict=True)), return_dict=True)[0]

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.onnx")
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes, not the user's concern
        torch.onnx.export(
            LastHidden(transformer).eval(),
            tuple(sample[n] for n in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(target)
    log.info("exported the text transformer to %s", target)
    return names


class OnnxTransformer(torch.nn.Module):
    """Stands in for a Hugging Face encoder inside sentence-transformers: same call, same
    ``last_hidden_state``, computed by an ONNX Runtime session."""

    def __init__(self, session: Any, names: list[str], config: Any) -> None:
        super().__init__()
        self.session = session
        self.names = names
        self.config = config

    def forward(self, **features: Any) -> dict[str, torch.Tensor]:
        ids = features["input_ids"]
        feeds = {n: features[n].cpu().numpy() for n in self.names if n in features}
        for name in self.names:  # e.g. token_type_ids when the tokenizer gives none
            feeds.setdefault(name, np.zeros(tuple(ids.shape), dtype=np.int64))
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return {"last_hidden_state": torch.from_numpy(hidden)}


def use_onnx(st: Any, path: str, threads: int) -> Path:
    """Replace the transformer of the loaded SentenceTransformer ``st`` (checkpoint at
    ``path``) with its ONNX export, exporting first when needed. Returns the ONNX file."""
    import onnxruntime as ort

    module = st[0]
    hf_model = module.model
    target = onnx_path(path)
    prepare = getattr(st, "preprocess", None) or st.tokenize  # tokenize: older releases
    sample = prepare(["an example sentence to trace the model", "another one"])
    names = [n for n in INPUTS if n in sample]
    if not target.is_file():
        names = export(hf_model, dict(sample), target)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores
    session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    module.model = OnnxTransformer(session, names, hf_model.config)
    return target
