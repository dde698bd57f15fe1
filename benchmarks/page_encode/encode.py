"""Page-leg encoding cost at real shapes: true architectures, random weights, real dev pages.

Builds ColIdefics3 (``vidore/colSmol-256M``), ColQwen2.5 (``vidore/colqwen2.5-v0.2``) and ColPali
(``vidore/colpali-v1.3``) at full size from their published configs (values below, with where they
come from), random-initialised, with their real processor settings (image size, tiling, tokens a
tile / max pixels). Tokenizers are the bundled MiniLM vocabulary plus each family's special tokens
(``tests/tiny_models.py``): the image tokens, which are almost all of a page's vectors, are exact;
the few prompt tokens may split differently from the real tokenizer.

Per model, in its own process (so ``peak_rss_mb`` is that model's): vectors a page, seconds a page
of colpali-engine's forward in float32 and of the fastest CPU path found (bfloat16 weights, batch),
interleaved round by round; GFLOPs a page (``torch.utils.flop_counter`` on a real forward) against
the machine's bf16 / fp32 GEMM rate measured in the same process.

    uv run --frozen python benchmarks/page_encode/encode.py --models colsmol --pages 2 \
        --json benchmarks/page_encode/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MM_DEV_DATA", "/work/shared/data/mmlongbench-dev"))

# ---------------------------------------------------------------------------------- configs
# vidore/colSmol-256M: an adapter on HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3).
#  text (SmolLM2-135M): SmolVLM-256M-Instruct config.json text_config: hidden 576,
#    intermediate 1536, 30 layers, 9 heads, 3 kv heads, head_dim 64, vocab 49280,
#    scale_factor 4, image_token_id 49190
#    (https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct config.json, mirrored at
#    huggingface.co/Mattimax/DATA-AI_Smol256M-Instruct/blob/main/config.json).
#  vision: google/siglip-base-patch16-512 (SmolVLM blog "SmolVLM Grows Smaller": 93M SigLIP base
#    patch-16/512): hidden 768, intermediate 3072, 12 layers, 12 heads, 512 px, 16 px patches.
#  processor (vidore ColSmolVLM-256M-Base / colSmol-256M-base preprocessor_config.json,
#    processor_config.json): Idefics3ImageProcessor size.longest_edge 2048, max_image_size 512,
#    do_image_splitting true, image_seq_len 64 (1024 patches a 512 px tile, pixel shuffle 4x4).
SMOL = {
    "text": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, head_dim=64, vocab_size=49280,
                 max_position_embeddings=8192, rope_theta=100000.0),
    "vision": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, image_size=512, patch_size=16),
    "scale_factor": 4, "longest_edge": 2048, "tile": 512, "image_seq_len": 64,
}  # fmt: skip
# vidore/colqwen2.5-v0.2 on Qwen/Qwen2.5-VL-3B-Instruct config.json: hidden 2048, intermediate
#  11008, 36 layers, 16 heads, 2 kv heads, vocab 151936, rope_theta 1e6, mrope_section [16,24,24],
#  tied embeddings; vision hidden 1280, out_hidden_size 2048, 14 px patches (the other vision
#  fields, depth 32, intermediate 3420, 16 heads, window 112, full attention at blocks 7/15/23/31,
#  are the Qwen2.5-VL vision defaults shared by 3B/7B). Processor: Qwen2VLImageProcessor
#  min_pixels 3136, max_pixels 602112 = 768 x 28 x 28 (colpali-engine's max_num_visual_tokens
#  768; vidore/colqwen2-v0.1 preprocessor_config.json commit 04d8156 sets the same 602112),
#  patch 14, merge 2, temporal patch 2.
QWEN = {
    "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                 num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                 max_position_embeddings=128000, rope_theta=1000000.0,
                 rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                   out_hidden_size=2048, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, hidden_act="silu"),
    "min_pixels": 3136, "max_pixels": 768 * 28 * 28,
}  # fmt: skip
# vidore/colpali-v1.3 on google/paligemma-3b-pt-448 (vidore/colpaligemma-3b-pt-448-base
#  config.json): Gemma text hidden 2048, intermediate 16384, 18 layers, 8 heads, 1 kv head,
#  head_dim 256, vocab 257216; SigLIP so400m vision hidden 1152, intermediate 4304, 27 layers,
#  16 heads, 448 px, 14 px patches -> 1024 image tokens; projection 2048. Processor: 448 x 448,
#  image_seq_length 1024.
PALI = {
    "text": dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                 num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=257216,
                 max_position_embeddings=8192),
    "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                   num_attention_heads=16, image_size=448, patch_size=14, projection_dim=2048),
    "image_tokens": 1024,
}  # fmt: skip

MODELS = {
    "colsmol": ("vidore/colSmol-256M", "ColIdefics3"),
    "colqwen2.5": ("vidore/colqwen2.5-v0.2", "ColQwen2_5"),
    "colpali": ("vidore/colpali-v1.3", "ColPali"),
}


def _tok(specials: dict[str, str], extra: list[str]) -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import minilm_tokenizer

    return minilm_tokenizer(specials, extra)


def build(kind: str) -> tuple[Any, Any]:
    """(model float32, processor) at full size, random weights (seeded)."""
    import torch

    torch.manual_seed(0)
    if kind == "colsmol":
        from colpali_engine.models import ColIdefics3, ColIdefics3Processor
        from transformers import Idefics3Config, Idefics3ImageProcessorPil

        extra = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
        extra += ["<|im_start|>"] + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
        tok = _tok(
            {
                "bos_token": "<|im_start|>",
                "eos_token": "<end_of_utterance>",
                "pad_token": "<|pad|>",
            },
            extra,
        )
        ip = Idefics3ImageProcessorPil(
            size={"longest_edge": SMOL["longest_edge"]},
            max_image_size={"longest_edge": SMOL["tile"]},
            do_image_splitting=True,
        )
        proc = ColIdefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=64)
        cfg = Idefics3Config(
            vision_config=SMOL["vision"],
            text_config={"model_type": "llama", **SMOL["text"], "pad_token_id": tok.pad_token_id},
            scale_factor=SMOL["scale_factor"],
            image_token_id=tok.convert_tokens_to_ids("<image>"),
            vocab_size=SMOL["text"]["vocab_size"],
            pad_token_id=tok.pad_token_id,
        )
        return ColIdefics3(cfg), proc
    if kind == "colqwen2.5":
        from colpali_engine.models import ColQwen2_5, ColQwen2_5_Processor
        from transformers import Qwen2_5_VLConfig, Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

        extra = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
        extra += ["<|image_pad|>", "<|video_pad|>"]
        tok = _tok({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, extra)
        kw = {"min_pixels": QWEN["min_pixels"], "max_pixels": QWEN["max_pixels"],
              "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}  # fmt: skip
        proc = ColQwen2_5_Processor(
            image_processor=Qwen2VLImageProcessorPil(**kw),
            video_processor=Qwen2VLVideoProcessor(**kw),
            tokenizer=tok,
        )
        ids = tok.convert_tokens_to_ids
        cfg = Qwen2_5_VLConfig(
            vision_config=QWEN["vision"],
            text_config={**QWEN["text"], "pad_token_id": tok.pad_token_id},
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
            vocab_size=QWEN["text"]["vocab_size"],
            tie_word_embeddings=True,
        )
        return ColQwen2_5(cfg), proc
    if kind == "colpali":
        from colpali_engine.models import ColPali, ColPaliProcessor
        from transformers import PaliGemmaConfig, SiglipImageProcessorPil

        tok = _tok({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}, ["<image>"])
        ip = SiglipImageProcessorPil(size={"height": 448, "width": 448}, image_seq_length=1024)
        proc = ColPaliProcessor(image_processor=ip, tokenizer=tok)
        cfg = PaliGemmaConfig(
            vision_config=PALI["vision"],
            text_config={**PALI["text"], "pad_token_id": tok.pad_token_id},
            projection_dim=2048,
            image_token_index=tok.convert_tokens_to_ids("<image>"),
            vocab_size=PALI["text"]["vocab_size"],
            pad_token_id=tok.pad_token_id,
        )
        return ColPali(cfg), proc
    raise ValueError(kind)


def pages(n: int, dpi: int = 144) -> list[Any]:
    """``n`` real dev pages rendered as ingestion renders them (PyMuPDF, ``dpi``)."""
    import pymupdf
    from PIL import Image

    out = []
    pdfs = sorted((DATA / "pdfs").glob("*.pdf"))
    if not pdfs:  # no dev set here (e.g. the GPU machine): letter pages from tests/pdfgen.py
        import tempfile

        sys.path.insert(0, str(ROOT / "tests"))
        from pdfgen import make_sample_pdf

        tmp = Path(tempfile.mkdtemp())
        pdfs = [make_sample_pdf(tmp / f"p{i}.pdf", [f"Page {i} fact."] * 2) for i in range(n)]
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            pix = doc[min(1, len(doc) - 1)].get_pixmap(dpi=dpi)
            out.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
        if len(out) == n:
            break
    return out


DEVICE = os.environ.get("PAGE_ENCODE_DEVICE", "cpu")


def _sync() -> None:
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_tflops(dtype: Any, n: int = 2048, reps: int = 3) -> float:
    import torch

    n = n * 4 if DEVICE.startswith("cuda") else n
    a = torch.randn(n, n, device=DEVICE).to(dtype)
    b = torch.randn(n, n, device=DEVICE).to(dtype)
    a @ b
    _sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        _sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def rss_mb() -> float:
    """Peak RSS of this process (on a GPU: peak device memory allocated), MB."""
    if DEVICE.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(kind: str, n_pages: int, rounds: int, fp32: bool, batch: int) -> dict[str, Any]:
    """One model in this process: the measurements above, as a dict."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    imgs = pages(n_pages)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    if not fp32:  # built in bf16 directly: a 3B model never holds fp32 weights (12+ GB)
        saved = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            model, proc = build(kind)
        finally:
            torch.set_default_dtype(saved)
    else:
        model, proc = build(kind)
    params = sum(p.numel() for p in model.parameters())
    model = model.to(torch.bfloat16).to(DEVICE).eval()
    build_s = time.perf_counter() - t0
    inputs = proc.process_images(imgs)
    vectors = inputs["attention_mask"].sum(dim=1).tolist()

    def fwd(m: Any, dtype: Any, items: slice) -> None:
        batch_in = {
            k: (v[items].to(dtype) if v.is_floating_point() else v[items]).to(DEVICE)
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            m(**batch_in)
        _sync()

    one = slice(0, 1)
    flops = FlopCounterMode(display=False)
    t0 = time.perf_counter()
    with flops:
        fwd(model, torch.bfloat16, one)  # warm-up doubles as the FLOP count
    warm_s = time.perf_counter() - t0
    gflop_page = flops.get_total_flops() / 1e9
    rss_bf16 = rss_mb()
    ref = None
    if fp32:
        ref = build(kind)[0].float().to(DEVICE).eval()  # a second copy: fp32 reference
    g_bf16 = gemm_tflops(torch.bfloat16)
    g_fp32 = gemm_tflops(torch.float32)
    times: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for _ in range(rounds):  # interleaved: ours (bf16, batch) then the reference (fp32, 1 page)
        for start in range(0, n_pages, batch):
            t0 = time.perf_counter()
            fwd(model, torch.bfloat16, slice(start, start + batch))
            times["bf16"].append((time.perf_counter() - t0) / min(batch, n_pages - start))
        if ref is not None:
            for start in range(n_pages):
                t0 = time.perf_counter()
                fwd(ref, torch.float32, slice(start, start + 1))
                times["fp32"].append(time.perf_counter() - t0)
    g_bf16 = max(g_bf16, gemm_tflops(torch.bfloat16))
    g_fp32 = max(g_fp32, gemm_tflops(torch.float32))
    name, arch = MODELS[kind]
    rows = []
    for runtime, dtype, rate, peak in (
        (f"torch bf16 (inference_mode, bf16 weights) on {DEVICE}", "bfloat16", g_bf16, rss_bf16),
        (f"colpali-engine forward, torch fp32 on {DEVICE}", "float32", g_fp32, rss_mb()),
    ):
        ts = times["bf16" if dtype == "bfloat16" else "fp32"]
        if not ts and dtype == "bfloat16" and rounds == 0:
            ts = [warm_s]  # --rounds 0: the one (first, FLOP-counted) forward is the timing
        if not ts:
            continue
        spp = min(ts)
        bound_s = gflop_page / (rate * 1e3)
        rows.append({
            "model": name, "architecture": arch, "params": params, "weights": "random-init",
            "vectors_per_page": round(sum(vectors) / len(vectors)),
            "vectors_per_page_all": vectors, "seconds_per_page": round(spp, 3),
            "seconds_per_page_median": round(sorted(ts)[len(ts) // 2], 3),
            "runtime": runtime, "dtype": dtype,
            "batch": batch if dtype == "bfloat16" else 1,
            "peak_rss_mb": round(peak, 1),
            "gflop_per_page": round(gflop_page, 1),
            "gemm_tflops": round(rate, 3),
            "gemm_bound_seconds_per_page": round(bound_s, 3),
            "fraction_of_gemm_bound": round(bound_s / spp, 3),
        })  # fmt: skip
    extra = {"build_s": round(build_s, 1), "warmup_s": round(warm_s, 1),
             "rss_before_build_mb": round(rss0, 1),
             "image_size_px": list(imgs[0].size), "pages": n_pages}  # fmt: skip
    for r in rows:
        r.update(extra)
    if ref is not None:
        rows[-1]["peak_rss_note"] = "process peak with the bf16 and the fp32 copies both loaded"
    return {"rows": rows}


def machine() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name() if DEVICE.startswith("cuda") else None
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n")[0].split()
    want = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"]
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "cpu_model": model, "cores": os.cpu_count(), "cpu_flags": [f for f in want if f in flags],
        "torch": torch.__version__, "loadavg_at_start": list(os.getloadavg()),
        "device": DEVICE, "gpu": gpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "shared_box": "yes: 2 cores shared with six other engineers' jobs and a running eval",
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="colsmol")
    ap.add_argument("--pages", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--no-fp32", default="", help="models run without the fp32 reference")
    ap.add_argument("--json", default="")
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        res = run_one(args.one, args.pages, args.rounds, args.one not in args.no_fp32, args.batch)
        print("RESULT " + json.dumps(res))
        return
    out = {"machine": machine(), "command": " ".join(sys.argv), "models": []}
    if args.json and Path(args.json).exists():
        old = json.loads(Path(args.json).read_text())
        keep = set(args.models.split(","))
        out["models"] = [m for m in old.get("models", []) if _kind(m["model"]) not in keep]
    for kind in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", kind, "--pages", str(args.pages),
               "--rounds", str(args.rounds), "--batch", str(args.batch),
               "--no-fp32", args.no_fp32]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            out["models"].append({"model": MODELS[kind][0], "error": proc.stderr[-2000:]})
            continue
        out["models"].extend(json.loads(line[0][7:])["rows"])
        print(json.dumps(out["models"][-2:], indent=1), flush=True)
    out["machine"]["loadavg_at_end"] = list(os.getloadavg())
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def _kind(model: str) -> str:
    return next((k for k, (name, _) in MODELS.items() if name == model), model)


if __name__ == "__main__":
    main()
