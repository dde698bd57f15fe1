"""The text encoder's ONNX backend: exported locally, same embeddings as torch, cached."""

from __future__ import annotations

import numpy as np
import pytest

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
    ref = SentenceTransformerEncoder(minilm_path, device="cpu")
    enc = SentenceTransformerEncoder(minilm_path, device="cpu", backend="onnx")
    exported = list(tmp_path.glob("onnx/*/model.onnx"))
    assert len(exported) == 1
    for a, b in (
        (ref.encode_document(TEXTS), enc.encode_document(TEXTS)),
        (ref.encode_query(TEXTS[:2]), enc.encode_query(TEXTS[:2])),
    ):
        assert b.dtype == np.float32 and b.shape == a.shape
        assert (a * b).sum(axis=1).min() > 0.9999
    assert enc.config()["backend"] == "onnx" and ref.config()["backend"] == "torch"
    # the export is made once and reused by the next encoder
    stamp = exported[0].stat().st_mtime_ns
    again = SentenceTransformerEncoder(**{**enc.config(), "model": minilm_path})
    assert exported[0].stat().st_mtime_ns == stamp
    np.testing.assert_allclose(again.encode_document(TEXTS[:1]), enc.encode_document(TEXTS[:1]))


def test_unknown_backend_is_refused(minilm_path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        SentenceTransformerEncoder(minilm_path, device="cpu", backend="openvino")
