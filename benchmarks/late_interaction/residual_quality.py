"""nDCG@5 of residual-code reranking on the dev proxy, next to exact float MaxSim (issue 25).

The proxy is ``quality.py``'s (real MiniLM token vectors of every mmlongbench-dev page, 128-d by
PCA; the 200 questions the same way), cached as ``--cache`` (npz) so the scale run reuses it.
Rows: exact float16 (the reference), residual codes alone (every page decoded, exact MaxSim over
the decoded vectors: the loss from compression only), and two-stage pipelines that rerank from
residual codes (no float vectors read).

    uv run --frozen python benchmarks/late_interaction/residual_quality.py \
        --cache /tmp/proxy.npz --json benchmarks/late_interaction/results_residual_quality.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import _ndcg, proxy_multivectors

from mm_retriever.multivector import ExactIndex, TwoStageIndex

DATA = Path("/work/shared/data/mmlongbench-dev")


def load_proxy(cache: Path) -> dict[str, Any]:
    """The dev proxy, from ``cache`` when present (else built and written there)."""
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        lengths = z["lengths"]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        qlen = z["qlengths"]
        qstarts = np.concatenate([[0], np.cumsum(qlen)])
        return {
            "keys": [tuple(k) for k in z["keys"].tolist()],
            "pages": [z["pages"][a:b] for a, b in itertools.pairwise(starts)],
            "queries": [z["queries"][a:b] for a, b in itertools.pairwise(qstarts)],
            "query_ids": z["query_ids"].tolist(),
            "qrels": json.loads(str(z["qrels"])),
        }
    proxy = proxy_multivectors(DATA)
    np.savez(
        cache,
        keys=np.asarray(proxy["keys"], dtype=object),
        pages=np.concatenate(proxy["pages"]).astype(np.float32),
        lengths=np.asarray([p.shape[0] for p in proxy["pages"]]),
        queries=np.concatenate(proxy["queries"]).astype(np.float32),
        qlengths=np.asarray([q.shape[0] for q in proxy["queries"]]),
        query_ids=np.asarray(proxy["query_ids"]),
        qrels=json.dumps({q: {f"{d}\t{p}": r for (d, p), r in v.items()}
                          for q, v in proxy["qrels"].items()}),
    )  # fmt: skip
    return load_proxy(cache)


def _qrels(proxy: dict[str, Any]) -> dict[str, dict[tuple[str, int], float]]:
    out = {}
    for q, v in proxy["qrels"].items():
        if isinstance(v, dict) and v and isinstance(next(iter(v)), str):
            out[q] = {(k.split("\t")[0], int(k.split("\t")[1])): r for k, r in v.items()}
        else:
            out[q] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/tmp/proxy.npz")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    t0 = time.perf_counter()
    proxy = load_proxy(Path(args.cache))
    proxy["qrels"] = _qrels(proxy)
    keys = proxy["keys"]
    pages = [np.asarray(p, np.float16) for p in proxy["pages"]]
    n_vec = sum(p.shape[0] for p in pages)
    print(
        f"proxy: {len(pages)} pages, {n_vec} vectors, {time.perf_counter() - t0:.0f} s", flush=True
    )
    everything = len(pages)
    reps: list[tuple[str, dict[str, Any] | None]] = [("exact f16", None)]
    for bits in (1, 2, 4):
        for k in (1024, 4096):
            opts = {"first_stage": "mean", "segments": 1, "candidates": everything,
                    "rerank": "residual", "rerank_bits": bits, "rerank_centroids": k}  # fmt: skip
            reps.append((f"residual b{bits} K{k} (all pages decoded)", opts))
    reps += [
        ("two_stage ivf K4096 n4 C300 + residual b2 K4096",
         {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300,
          "rerank": "residual", "rerank_bits": 2, "rerank_centroids": 4096}),
        ("two_stage ivf K4096 n4 C100 + residual b2 K4096",
         {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 100,
          "rerank": "residual", "rerank_bits": 2, "rerank_centroids": 4096}),
        ("two_stage ivf K4096 n4 C300 exact f16 rerank",
         {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300}),
    ]  # fmt: skip
    rows, ref = [], None
    for name, opts in reps:
        t1 = time.perf_counter()
        if opts is None:
            index: Any = ExactIndex(128)
        else:
            from mm_retriever.multivector import FlatMultiVectors

            flat = FlatMultiVectors(128)
            if opts.get("rerank") != "residual":
                flat.append(pages)
            index = TwoStageIndex(128, flat.take, **opts)
        index.add(keys, pages)
        build_s = time.perf_counter() - t1
        ndcg = _ndcg(index, proxy, keys)
        ref = ndcg if ref is None else ref
        row: dict[str, Any] = {"representation": name, "ndcg_at_5": round(ndcg, 4),
                               "relative_to_exact_f16": round(ndcg / ref, 4),
                               "build_s": round(build_s, 1)}  # fmt: skip
        codes = getattr(index, "codes", None)
        if codes is not None and codes.trained:
            bpv = codes.codec.bytes_per_vector
            row["bytes_per_vector"] = bpv
            row["disk_bytes_per_page_at_1100_vectors"] = bpv * 1100
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {
        "command": " ".join(sys.argv),
        "proxy": "quality.py's dev proxy: MiniLM token vectors of 1,405 mmlongbench-dev pages "
        f"({n_vec} vectors, 128-d), 200 questions; nDCG@5 corpus-wide",
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
