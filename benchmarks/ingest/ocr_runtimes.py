"""rapidocr's models on ONNX Runtime vs OpenVINO (its default precision, and float32), same pages,
same run, one thread each: seconds and how far the readings agree with ONNX Runtime's.

    uv run --frozen python benchmarks/ingest/ocr_runtimes.py --pages 16 \
        --out benchmarks/ingest/results_ocr_runtimes.json

Pages: a fixed random sample (seed 2) of the dev set's pages whose text layer is thin (fewer than
64 characters: the pages ingestion OCRs whole), rendered at 150 dpi; detector limit 960 px (the
ingest defaults). Every variant reads every page twice; the first pass's text is compared.
OpenVINO float32 is forced by adding ``INFERENCE_PRECISION_HINT`` to the CPU properties rapidocr
passes (rapidocr has no setting for it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import sys
import time
from pathlib import Path

import pymupdf
import rapidocr
from rapidocr import EngineType, RapidOCR
from rapidocr.inference_engine.openvino import device_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import DEV, git_commit, machine

from mm_retriever.ingest.render import render_page

MODELS = Path(rapidocr.__file__).parent / "models"
_PRECISION: dict[str, str] = {}  # forced OpenVINO precision for the model being built
_base_config = device_config.CPUConfig.get_config


def _config_with_precision(self) -> dict:
    config = _base_config(self)
    config.update({"INFERENCE_PRECISION_HINT": _PRECISION["hint"]} if _PRECISION else {})
    return config


device_config.CPUConfig.get_config = _config_with_precision


def build(runtime: str, precision: str | None = None) -> RapidOCR:
    params = {
        "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": 1,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        "EngineConfig.openvino.inference_num_threads": 1,
        "Det.model_path": str(MODELS / "PP-OCRv6_det_small.onnx"),
        "Rec.model_path": str(MODELS / "PP-OCRv6_rec_small.onnx"),
        "Cls.model_path": str(MODELS / "ch_ppocr_mobile_v2.0_cls_mobile.onnx"),
        "Det.limit_type": "max",
        "Det.limit_side_len": 960,
    }
    if runtime == "openvino":
        for stage in ("Det", "Cls", "Rec"):
            params[f"{stage}.engine_type"] = EngineType.OPENVINO
    _PRECISION.clear()
    if precision:
        _PRECISION["hint"] = precision
    try:  # rapidocr loads its models on first use: load them now, with the forced precision
        model = RapidOCR(params=params)
        model._load_det_model(), model._load_cls_model(), model._load_rec_model()
        return model
    finally:
        _PRECISION.clear()


def thin_pages(pdfs: Path) -> list[tuple[Path, int]]:
    out = []
    for f in sorted(pdfs.glob("*.pdf")):
        with pymupdf.open(f) as doc:
            out += [(f, i) for i, page in enumerate(doc) if len(page.get_text().strip()) < 64]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pdfs", type=Path, default=DEV)
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results_ocr_runtimes.json")
    )
    args = ap.parse_args()
    import openvino

    candidates = thin_pages(args.pdfs)
    sample = random.Random(2).sample(candidates, min(args.pages, len(candidates)))
    images = []
    for f, i in sample:
        with pymupdf.open(f) as doc:
            images.append(render_page(doc[i], 150).convert("RGB"))
    variants = {
        "onnxruntime": build("onnxruntime"),
        "openvino (its default precision)": build("openvino"),
        "openvino f32": build("openvino", "f32"),
    }
    default_precision = str(
        openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    )
    seconds = dict.fromkeys(variants, 0.0)
    texts: dict[str, list[str]] = {}
    for rep in range(2):
        for name, model in variants.items():
            for image in images:
                t0 = time.perf_counter()
                out = model(image)
                seconds[name] += time.perf_counter() - t0
                if rep == 0:
                    texts.setdefault(name, []).append(" ".join(out.txts or []))
    ref = texts["onnxruntime"]
    rows = {}
    for name in variants:
        same = sum(a == b for a, b in zip(texts[name], ref, strict=True))
        sim = [
            difflib.SequenceMatcher(None, a.split(), b.split()).ratio()
            for a, b in zip(texts[name], ref, strict=True)
        ]
        rows[name] = {
            "seconds": round(seconds[name], 1),
            "speedup_vs_onnxruntime": round(seconds["onnxruntime"] / seconds[name], 2),
            "pages_with_identical_text": same,
            "mean_word_sequence_similarity": round(sum(sim) / len(sim), 3),
        }
        print(name, rows[name], flush=True)
    result = {
        "command": " ".join(["uv run --frozen python", *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": machine(),
        "openvino": openvino.__version__,
        "openvino_default_precision": default_precision,
        "pages": [f"{f.name}#{i}" for f, i in sample],
        "passes": 2,
        "variants": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
