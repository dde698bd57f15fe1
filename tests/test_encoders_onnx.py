"""The text encoder's ONNX backend: exported locally, same embeddings as torch, cached."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mm_retriever.encoders.onnx_query import read_layout
from mm_retriever.encoders.text import SentenceTransformerEncoder

pytest.importorskip("onnx", reason="backend='onnx' needs the onnx extra")

TEXTS = [
    "The fleet has exactly 47 electric ferries.",
    "Revenue grew 12% in 2023, driven by services; operating margin was 31.4%.",
    "short",
    " ".join(["A long passage about harbour lighthouses and their lamps."] * 60),  # truncated
]


def test_onnx_backend_gives_the_torch_embeddings(minilm_path, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(tmp_path))
    ref = SentenceTransformerEncoder(minilm_path, device="cpu", dtype="float32")
    enc = SentenceTransformerEncoder(minilm_path, device="cpu", backend="onnx")
    assert not list(tmp_path.glob("onnx/*/model.onnx"))  # models load on first use
    for a, b in (
        (ref.encode_document(TEXTS), enc.encode_document(TEXTS)),
        (ref.encode_query(TEXTS[:2]), enc.encode_query(TEXTS[:2])),
    ):
        assert b.dtype == np.float32 and b.shape == a.shape
        assert (a * b).sum(axis=1).min() > 0.9999
    exported = list(tmp_path.glob("onnx/*/model.onnx"))
    assert len(exported) == 1
    assert enc.config()["backend"] == "onnx" and ref.config()["backend"] == "torch"
    # the export is made once and reused by the next encoder
    stamp = exported[0].stat().st_mtime_ns
    again = SentenceTransformerEncoder(**{**enc.config(), "model": minilm_path})
    assert exported[0].stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.encode_document(TEXTS[:1]), enc.encode_document(TEXTS[:1]))


def test_unknown_backend_is_refused(minilm_path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        SentenceTransformerEncoder(minilm_path, device="cpu", backend="openvino")


def test_queries_need_no_torch_once_the_model_was_exported(minilm_path, tmp_path, monkeypatch):
    """Loading the model for documents exports it; a later encoder embeds queries with ONNX
    Runtime and the checkpoint's tokenizer (torch model never loaded), equal to the float32
    sentence-transformers embeddings; a fresh process does it without importing torch."""
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(tmp_path))
    ref = SentenceTransformerEncoder(minilm_path, device="cpu", dtype="float32")
    ref.encode_document(TEXTS[:1])  # loads the torch model, which exports it
    assert len(list(tmp_path.glob("onnx/*/model.onnx"))) == 1
    fast = SentenceTransformerEncoder(minilm_path, device="cpu")
    queries = [TEXTS[0], "what did the lighthouse keeper log", TEXTS[3]]  # the last is truncated
    with pytest.warns(UserWarning, match="truncated"):
        got = fast.encode_query(queries)
    with pytest.warns(UserWarning, match="truncated"):
        want = ref.encode_query(queries)
    assert fast._model is None  # answered without loading the torch model
    assert got.dtype == np.float32 and got.shape == want.shape == (3, fast.dim)
    assert (got * want).sum(axis=1).min() > 0.9999
    assert fast.count_tokens(queries) == ref.count_tokens(queries)
    # documents still go through sentence-transformers (loaded now); queries then use it too
    assert (fast.encode_document(TEXTS[:1]) * ref.encode_document(TEXTS[:1])).sum() > 0.998
    assert fast._model is not None
    code = (
        "import sys, numpy as np\n"
        "from mm_retriever.encoders.text import SentenceTransformerEncoder\n"
        f"enc = SentenceTransformerEncoder({minilm_path!r}, device='cpu')\n"
        "q = enc.encode_query(['what did the lighthouse keeper log'])\n"
        "print('torch' in sys.modules, q.shape, float(np.linalg.norm(q)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out[:2] == ["False", "(1,"] and abs(float(out[-1]) - 1.0) < 1e-5
    # switched off: sentence-transformers answers
    monkeypatch.setenv("MM_RETRIEVER_QUERY_ONNX", "0")
    slow = SentenceTransformerEncoder(minilm_path, device="cpu", dtype="float32")
    np.testing.assert_allclose(slow.encode_query(queries[:2]), want[:2], atol=1e-5)
    assert slow._model is not None


def test_read_layout_only_for_plain_checkpoints(minilm_path, tmp_path):
    """The ONNX query path covers Transformer + Pooling (+ Normalize) checkpoints; others (a
    Dense layer, or files missing) are left to sentence-transformers."""
    layout = read_layout(minilm_path)
    assert layout is not None
    assert (layout.pooling, layout.normalize, layout.dim) == ("mean", True, 384)
    assert (layout.max_length, layout.position_limit) == (256, 512)
    dense = tmp_path / "dense"
    shutil.copytree(minilm_path, dense)
    modules = json.loads((dense / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (dense / "modules.json").write_text(json.dumps(modules))
    assert read_layout(dense) is None
    (dense / "modules.json").unlink()
    assert read_layout(dense) is None
