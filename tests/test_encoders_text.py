"""Text encoder: the real bundled MiniLM, the offline fallback, family prompts, truncation."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pytest
from tiny_models import build_prompted_st_model

from mm_retriever import registry
from mm_retriever.encoders import text as text_mod
from mm_retriever.encoders.text import (
    BGE_EN_QUERY,
    DEFAULT_FALLBACK_MODEL,
    SentenceTransformerEncoder,
    select_prompts,
)
from mm_retriever.errors import ModelUnavailableError
from mm_retriever.protocols import TextEncoder

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Quarterly revenue grew 12% driven by cloud subscriptions.",
    "The recipe needs two eggs, flour, sugar and butter.",
]


@pytest.fixture(scope="module")
def minilm(minilm_path) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(minilm_path, device="cpu", dtype="float32", batch_size=2)


@pytest.fixture(scope="module")
def st_model(minilm_path):
    """The plain sentence-transformers model, to compare against."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


def _raw(st_model, texts: list[str]) -> np.ndarray:
    return st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_minilm_ranks_the_relevant_sentence_first(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    docs = minilm.encode_document(DOCS)
    queries = minilm.encode_query(
        [
            "When was the Eiffel Tower built?",
            "how do plants make energy from sunlight",
            "sales growth",
        ]
    )
    assert docs.shape == (4, 384) and queries.shape == (3, 384)
    assert docs.dtype == np.float32 and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert (queries @ docs.T).argmax(axis=1).tolist() == [0, 1, 2]


def test_minilm_gets_no_prompt_and_matches_sentence_transformers(minilm, st_model):
    assert (minilm.prompts.query, minilm.prompts.document) == ("", "")
    np.testing.assert_allclose(minilm.encode_query(DOCS[:2]), _raw(st_model, DOCS[:2]), atol=1e-5)
    np.testing.assert_allclose(minilm.encode_document(DOCS), _raw(st_model, DOCS), atol=1e-5)
    assert minilm.encode_query([]).shape == (0, 384)


def test_long_query_is_truncated_with_a_warning(minilm):
    long_query = "revenue " * 400
    assert minilm.count_tokens([long_query])[0] > minilm.max_length == 256
    with pytest.warns(UserWarning, match=r"truncated to 256 tokens"):
        out = minilm.encode_query([long_query])
    assert out.shape == (1, 384) and np.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        minilm.encode_query(["a short question"])


def test_max_length_option(minilm_path):
    enc = SentenceTransformerEncoder(minilm_path, device="cpu", max_length=16)
    assert enc.max_length == 16 and enc.config()["max_length"] == 16
    with pytest.warns(UserWarning, match="truncated to 16 tokens"):
        enc.encode_query([" ".join(["token"] * 30)])
    with pytest.raises(ValueError, match="max_length must be between 1 and 512"):
        SentenceTransformerEncoder(minilm_path, device="cpu", max_length=4096)


def test_default_model_falls_back_to_bundled_minilm(caplog, minilm_path):
    text_mod._warned_fallbacks.clear()
    with caplog.at_level(logging.WARNING, logger="mm_retriever.encoders.text"):
        enc = SentenceTransformerEncoder(device="cpu")
        SentenceTransformerEncoder(device="cpu")  # a second one does not warn again
    warnings_logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings_logged) == 1
    line = warnings_logged[0].getMessage()
    assert "\n" not in line
    assert "BAAI/bge-small-en-v1.5" in line and DEFAULT_FALLBACK_MODEL in line
    assert "huggingface-cli download BAAI/bge-small-en-v1.5" in line
    assert enc.model_name == DEFAULT_FALLBACK_MODEL
    assert (enc.prompts.query, enc.prompts.document) == ("", "")  # MiniLM's, not BGE's
    cfg = enc.config()
    assert cfg["model"] == DEFAULT_FALLBACK_MODEL and cfg["fallback"] is None
    again = registry.encoders.create("sentence-transformers", **json.loads(json.dumps(cfg)))
    assert again.config() == cfg
    np.testing.assert_allclose(again.encode_query(["a"]), enc.encode_query(["a"]))


def test_unknown_model_without_fallback_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        SentenceTransformerEncoder("acme/no-such-embedder", fallback=None, device="cpu")
    assert "acme/no-such-embedder" in str(err.value)
    assert "huggingface-cli download acme/no-such-embedder" in str(err.value)


def test_prompts_declared_by_the_checkpoint_are_used(tmp_path, st_model):
    # a folder whose name says BGE but whose sentence-transformers config declares E5 prompts
    folder = build_prompted_st_model(
        tmp_path / "bge-small-en-v1.5", {"query": "query: ", "passage": "passage: "}
    )
    enc = SentenceTransformerEncoder(str(folder), device="cpu", dtype="float32")
    assert (enc.prompts.query, enc.prompts.document) == ("query: ", "passage: ")
    assert "config_sentence_transformers" in enc.prompts.source
    q, d = "what is photosynthesis", DOCS[1]
    np.testing.assert_allclose(enc.encode_query([q]), _raw(st_model, ["query: " + q]), atol=1e-5)
    np.testing.assert_allclose(
        enc.encode_document([d]), _raw(st_model, ["passage: " + d]), atol=1e-5
    )
    # prompts named "document" win over "passage"; explicit arguments win over the checkpoint
    folder2 = build_prompted_st_model(
        tmp_path / "m2", {"query": "Q: ", "document": "D: ", "passage": "P: "}
    )
    assert select_prompts(str(folder2), str(folder2)).document == "D: "
    enc2 = SentenceTransformerEncoder(
        str(folder2), device="cpu", query_prompt="", document_prompt=""
    )
    assert (enc2.prompts.query, enc2.prompts.document) == ("", "")
    assert enc2.prompts.source == "arguments"


def test_known_family_table_only_when_the_files_say_nothing(tmp_path, st_model):
    # no prompts in the checkpoint, folder named exactly like a known model
    bge = build_prompted_st_model(tmp_path / "bge-small-en-v1.5", None)
    enc = SentenceTransformerEncoder(str(bge), device="cpu", dtype="float32")
    assert (enc.prompts.query, enc.prompts.document) == (BGE_EN_QUERY, "")
    assert enc.prompts.source == "known model BAAI/bge-small-en-v1.5"
    q = "what is photosynthesis"
    np.testing.assert_allclose(enc.encode_query([q]), _raw(st_model, [BGE_EN_QUERY + q]), atol=1e-5)
    np.testing.assert_allclose(enc.encode_document([DOCS[1]]), _raw(st_model, [DOCS[1]]), atol=1e-5)
    # names are matched exactly, never by substring
    other = build_prompted_st_model(tmp_path / "my-bge-small-en-v1.5-finetune", None)
    assert select_prompts(str(other), str(other)).source == "none"


def test_hf_cache_repo_id_selects_e5_prompts(tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--intfloat--e5-small-v2"
    snap = build_prompted_st_model(repo / "snapshots" / "abc123", None)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    enc = SentenceTransformerEncoder("intfloat/e5-small-v2", fallback=None, device="cpu")
    assert enc.path == str(snap)
    assert (enc.prompts.query, enc.prompts.document) == ("query: ", "passage: ")
    cfg = enc.config()
    assert cfg["model"] == "intfloat/e5-small-v2"
    assert (cfg["query_prompt"], cfg["document_prompt"]) == ("query: ", "passage: ")
    # the prompts are decided from the cache folder too, whatever id was used to reach it
    assert select_prompts("anything", str(snap)).query == "query: "


def test_auto_dtype_is_bfloat16_only_on_cpus_with_amx(minilm_path, minilm, monkeypatch):
    """dtype 'auto' (the default) on the CPU: bfloat16 where AMX multiplies it in hardware,
    float32 elsewhere; bfloat16 embeddings stay unit length and within 0.998 cosine."""
    import torch

    from mm_retriever.encoders import text as text_module

    monkeypatch.setattr(text_module, "_cpu_auto_dtype", lambda: torch.bfloat16)
    fast = SentenceTransformerEncoder(minilm_path, device="cpu")
    assert fast.dtype == torch.bfloat16 and fast.config()["dtype"] is None  # chosen per machine
    a, b = minilm.encode_document(DOCS), fast.encode_document(DOCS)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.998
    assert (fast.encode_query(["sales growth"]) @ b.T).argmax() == 2
    monkeypatch.setattr(text_module, "_cpu_auto_dtype", lambda: torch.float32)
    assert SentenceTransformerEncoder(minilm_path, device="cpu").dtype == torch.float32
    # an explicit dtype, or the ONNX backend, is never changed
    explicit = SentenceTransformerEncoder(minilm_path, device="cpu", dtype="float32")
    assert explicit.dtype == torch.float32
