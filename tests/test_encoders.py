"""Page-image (ColPali family) and image-text (CLIP/SigLIP) encoders on tiny real checkpoints.

Each tiny checkpoint is saved to a folder and loaded by path through the encoders' real code
path (config.json -> class). Also: checkpoint lookup and its errors, device/dtype choice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor
from tiny_models import build_tiny_colidefics3_adapter, copy_checkpoint, tiny_images, tiny_model_dir

from mm_retriever import registry
from mm_retriever.device import resolve_device, resolve_dtype
from mm_retriever.encoders.colpali import COLPALI_CLASSES, ColPaliEncoder
from mm_retriever.encoders.hub import inspect_checkpoint, resolve_model_path
from mm_retriever.encoders.image_text import CLIPEncoder, SigLIPEncoder
from mm_retriever.errors import ModelUnavailableError, UnsupportedModelError
from mm_retriever.multivector.scoring import maxsim
from mm_retriever.protocols import ImageTextEncoder, MultiVectorEncoder

QUERIES = ["revenue by region in 2021", "x", "which chart shows the largest increase in users?"]
COLPALI_KINDS = {
    "colpali": ("ColPali", "paligemma"),
    "colidefics3": ("ColIdefics3", "idefics3"),
    "colqwen2": ("ColQwen2", "qwen2_vl"),
}


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """``ckpt(kind)``: the folder of a tiny checkpoint (built once per session)."""
    return lambda kind: str(tiny_model_dir(kind, tmp_path_factory))


@pytest.fixture(scope="module", params=sorted(COLPALI_KINDS))
def colpali_case(request, ckpt) -> tuple[str, ColPaliEncoder]:
    return request.param, ColPaliEncoder(ckpt(request.param), device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def images():
    return tiny_images(3)


# ----------------------------------------------------------------------------- ColPali family
def test_colpali_class_chosen_from_config(colpali_case):
    kind, enc = colpali_case
    cls_name, model_type = COLPALI_KINDS[kind]
    assert enc.model_type == model_type
    assert type(enc._model).__name__ == cls_name
    assert isinstance(enc, MultiVectorEncoder)
    assert enc.dim == 128
    assert enc._model.config._attn_implementation == "eager"  # CPU: no SDPA NaN rows
    assert type(enc._processor.image_processor).__name__.endswith("Pil")  # no torchvision


def test_colpali_outputs_have_no_padding_rows(colpali_case, images):
    _, enc = colpali_case
    queries = enc.encode_query(QUERIES)
    pages = enc.encode_document(images)
    assert len(queries) == 3 and len(pages) == 3
    proc = enc._processor
    q_batch = proc.process_queries(QUERIES)
    assert [q.shape[0] for q in queries] == q_batch["attention_mask"].sum(dim=1).tolist()
    for i, img in enumerate(images):
        n_real = int(proc.process_images([img])["attention_mask"].sum())
        assert pages[i].shape[0] == n_real
    for t in queries + pages:
        assert t.dtype == torch.float32 and t.device.type == "cpu" and t.shape[1] == enc.dim
        assert not torch.isnan(t).any()
        # every kept row is a real (unit-length) embedding, none is a zeroed pad row
        torch.testing.assert_close(t.norm(dim=-1), torch.ones(t.shape[0]), rtol=0, atol=1e-3)
    # the queries differ in length, so at least one batch was padded
    assert len({q.shape[0] for q in queries}) > 1


def test_colpali_batching_does_not_change_outputs(colpali_case, images):
    _, enc = colpali_case
    together = enc.encode_document(images)  # batches of 2: padded
    alone = [enc.encode_document([im])[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    q_together = enc.encode_query(QUERIES)
    q_alone = [enc.encode_query([q])[0] for q in QUERIES]
    for a, b in zip(q_together, q_alone, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_colpali_scores_equal_colpali_engine(colpali_case, images):
    _, enc = colpali_case
    queries, pages = enc.encode_query(QUERIES), enc.encode_document(images)
    ref = BaseVisualRetrieverProcessor.score_multi_vector(queries, pages, device="cpu")
    torch.testing.assert_close(maxsim(queries, pages), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc._processor.score(queries, pages, device="cpu"), ref)
    torch.testing.assert_close(enc.score(queries, pages), ref, rtol=1e-5, atol=1e-5)


def test_colpali_config_round_trip(colpali_case, images):
    _, enc = colpali_case
    cfg = enc.config()
    assert json.loads(json.dumps(cfg)) == cfg
    again = registry.encoders.create("colpali", **cfg)
    assert again.config() == cfg
    assert type(again._model) is type(enc._model)
    a, b = enc.encode_document(images[:1])[0], again.encode_document(images[:1])[0]
    torch.testing.assert_close(a, b)


def test_colpali_misleading_folder_name_loads_by_config(ckpt, tmp_path):
    # the name says Qwen2 and PaliGemma; config.json says idefics3
    fake = copy_checkpoint(ckpt("colidefics3"), tmp_path / "colqwen2-paligemma-v1.0")
    enc = ColPaliEncoder(str(fake), device="cpu")
    assert type(enc._model).__name__ == "ColIdefics3"


def test_colpali_peft_adapter_checkpoint(ckpt, tmp_path):
    adapter = build_tiny_colidefics3_adapter(tmp_path / "adapter", ckpt("colidefics3"))
    assert not (adapter / "config.json").exists()
    info = inspect_checkpoint(str(adapter))
    assert info.is_adapter and info.model_type == "idefics3"
    assert info.base_path == str(Path(ckpt("colidefics3")).resolve())
    enc = ColPaliEncoder(str(adapter), device="cpu")
    base = ColPaliEncoder(ckpt("colidefics3"), device="cpu")
    q, qb = enc.encode_query(["a"])[0], base.encode_query(["a"])[0]
    assert q.shape == qb.shape
    assert not torch.allclose(q, qb)  # the LoRA weights are applied


def test_colpali_adapter_with_missing_base(ckpt, tmp_path):
    adapter = build_tiny_colidefics3_adapter(tmp_path / "adapter", ckpt("colidefics3"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "vidore/no-such-base-model"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError) as err:
        ColPaliEncoder(str(adapter), device="cpu")
    assert "vidore/no-such-base-model" in str(err.value)
    assert "base model of the adapter" in str(err.value)


def test_colpali_rejects_a_non_colpali_checkpoint(ckpt):
    with pytest.raises(UnsupportedModelError, match="model_type is 'clip'"):
        ColPaliEncoder(ckpt("clip"), device="cpu")


def test_colpali_class_table_matches_colpali_engine():
    import colpali_engine.models as cm

    for model_type, (model_name, proc_name) in COLPALI_CLASSES.items():
        model_cls = getattr(cm, model_name)
        assert model_cls.config_class.model_type == model_type
        assert hasattr(cm, proc_name)


def test_colpali_empty_input(colpali_case):
    _, enc = colpali_case
    assert enc.encode_query([]) == [] and enc.encode_document([]) == []
    with pytest.raises(TypeError):
        enc.encode_query("a single string")


# ----------------------------------------------------------------------------- CLIP / SigLIP
@pytest.fixture(scope="module", params=["clip", "siglip"])
def dual_case(request, ckpt):
    path = ckpt(request.param)
    cls = CLIPEncoder if request.param == "clip" else SigLIPEncoder
    return request.param, cls(path, device="cpu", batch_size=2)


def test_image_text_shapes_and_norms(dual_case, images):
    kind, enc = dual_case
    assert isinstance(enc, ImageTextEncoder)
    assert enc.model_type == kind
    q = enc.encode_query(QUERIES)
    d = enc.encode_document(images)
    assert q.shape == (3, enc.dim) and d.shape == (3, enc.dim)
    assert q.dtype == np.float32 and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert enc.encode_query([]).shape == (0, enc.dim)
    assert type(enc._processor.image_processor).__name__.endswith("Pil")


def test_image_text_batching_does_not_change_outputs(dual_case, images):
    _, enc = dual_case
    q = enc.encode_query(QUERIES)
    q1 = np.concatenate([enc.encode_query([t]) for t in QUERIES])
    np.testing.assert_allclose(q, q1, atol=1e-5)
    d = enc.encode_document(images)
    d1 = np.concatenate([enc.encode_document([im]) for im in images])
    np.testing.assert_allclose(d, d1, atol=1e-5)


def test_siglip_pads_text_to_max_length(ckpt):
    enc = SigLIPEncoder(ckpt("siglip"), device="cpu")
    assert enc._padding == "max_length"
    ids = enc._processor(
        text=["a"], padding=enc._padding, max_length=enc.max_length, return_tensors="pt"
    )["input_ids"]
    assert ids.shape[1] == enc.max_length == 16


def test_image_text_long_query_warns(dual_case):
    _, enc = dual_case
    with pytest.warns(UserWarning, match="truncated"):
        out = enc.encode_query(["word " * 100])
    assert out.shape == (1, enc.dim)


def test_image_text_class_follows_config_and_round_trips(ckpt, images):
    # a SigLIP checkpoint given to the CLIP wrapper still loads as SigLIP
    enc = CLIPEncoder(ckpt("siglip"), device="cpu")
    assert type(enc._model).__name__ == "SiglipModel"
    cfg = enc.config()
    again = registry.encoders.create("clip", **cfg)
    assert again.config() == cfg
    np.testing.assert_allclose(enc.encode_document(images), again.encode_document(images))


def test_image_text_rejects_colpali_checkpoint(ckpt):
    with pytest.raises(UnsupportedModelError, match="paligemma"):
        SigLIPEncoder(ckpt("colpali"), device="cpu")


# ----------------------------------------------------------------------------- checkpoints
def test_unknown_model_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model_path("vidore/definitely-not-a-model")
    msg = str(err.value)
    assert "vidore/definitely-not-a-model" in msg
    assert "Hugging Face cache" in msg and "HF_HUB_OFFLINE" in msg
    assert "huggingface-cli download vidore/definitely-not-a-model" in msg
    assert "local folder" in msg
    assert "Traceback" not in msg and "\n" not in msg
    with pytest.raises(ModelUnavailableError, match="definitely-not-a-model"):
        ColPaliEncoder("vidore/definitely-not-a-model", device="cpu")
    with pytest.raises(ModelUnavailableError, match="no-clip"):
        CLIPEncoder("openai/no-clip", device="cpu")


def test_unknown_model_online_tries_the_hub(monkeypatch):
    """Without HF_HUB_OFFLINE the Hub is asked (here it cannot be reached, or has no such
    repo); the message names that attempt and its error."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once, at import
    with pytest.raises(ModelUnavailableError) as err:
        resolve_model_path("definitely-not-an-org/definitely-not-a-model")
    msg = str(err.value)
    assert "download from the Hub failed" in msg, msg
    assert "UnboundLocalError" not in msg and "Traceback" not in msg


def test_missing_local_folder_and_file(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no folder at"):
        resolve_model_path(str(tmp_path / "nothing" / "here"))
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="is a file"):
        resolve_model_path(str(f))


def test_hf_cache_snapshot_is_found(tmp_path, monkeypatch, ckpt):
    from huggingface_hub import constants

    snap = tmp_path / "hub" / "models--acme--tiny-clip" / "snapshots" / "0123abcd"
    copy_checkpoint(ckpt("clip"), snap)
    refs = tmp_path / "hub" / "models--acme--tiny-clip" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model_path("acme/tiny-clip") == str(snap)
    enc = CLIPEncoder("acme/tiny-clip", device="cpu")
    assert enc.config()["model"] == "acme/tiny-clip"


def test_bundled_minilm_resolves_offline(minilm_path):
    assert Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")) == Path(minilm_path)


def test_local_folder_wins(ckpt):
    assert resolve_model_path(ckpt("colqwen2")) == str(Path(ckpt("colqwen2")).resolve())
    assert inspect_checkpoint(ckpt("colqwen2")).model_type == "qwen2_vl"


# ----------------------------------------------------------------------------- device / dtype
def test_device_and_dtype():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    assert resolve_dtype(None, "cpu") == torch.float32
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_dtype(torch.float64, "cpu") == torch.float64
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-9000")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        assert resolve_dtype(None, "cuda") in (torch.bfloat16, torch.float16)
