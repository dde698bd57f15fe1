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

from mm_retriever.multivector import ExactIndex, FlatMultiVectors, TwoStageIndex
from mm_retriever.multivector.residual import ResidualCodec

DATA = Path("/work/shared/data/mmlongbench-dev")


def load_proxy(cache: Path) -> dict[str, Any]:
    """The dev proxy, from ``cache`` when present (else built and written there)."""
    if cache.exists():
        z = dict(np.load(cache, allow_pickle=True))  # each z[...] of an NpzFile re-reads it
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
    ap.add_argument("--cache-only", action="store_true", help="build the proxy cache and stop")
    args = ap.parse_args()
    t0 = time.perf_counter()
    proxy = load_proxy(Path(args.cache))
    if args.cache_only:
        return
    proxy["qrels"] = _qrels(proxy)
    keys = proxy["keys"]
    pages = [np.asarray(p, np.float16) for p in proxy["pages"]]
    n_vec = sum(p.shape[0] for p in pages)
    print(
        f"proxy: {len(pages)} pages, {n_vec} vectors, {time.perf_counter() - t0:.0f} s", flush=True
    )
    rows, ref = [], None

    def record(name: str, index: Any, extra: dict[str, Any]) -> None:
        nonlocal ref
        ndcg = _ndcg(index, proxy, keys)
        ref = ndcg if ref is None else ref
        row = {"representation": name, "ndcg_at_5": round(ndcg, 4),
               "relative_to_exact_f16": round(ndcg / ref, 4), **extra}  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)

    exact = ExactIndex(128)
    exact.add(keys, pages)
    record("exact f16", exact, {})
    flat_all = np.concatenate(pages)
    lengths = np.asarray([p.shape[0] for p in pages])
    sample = flat_all[np.random.default_rng(0).permutation(flat_all.shape[0])]
    for bits, k in ((2, 4096), (1, 4096), (4, 4096), (2, 1024)):
        # every page decoded from its codes, exact MaxSim over the decoded vectors: the loss of
        # the compression alone (what a rerank of any candidate set from codes sees)
        t1 = time.perf_counter()
        codec = ResidualCodec.train(sample[: 16 * k], k, bits)
        decoded = codec.decode(*codec.encode(flat_all))
        index = ExactIndex(128)
        index.add(keys, np.split(decoded, np.cumsum(lengths)[:-1]))
        record(f"residual b{bits} K{k} (every page decoded)", index, {
            "bytes_per_vector": codec.bytes_per_vector,
            "disk_bytes_per_page_at_1135_vectors": codec.bytes_per_vector * 1135,
            "train_encode_s": round(time.perf_counter() - t1, 1)})  # fmt: skip
    pipelines = [
        ("two_stage ivf K4096 n4 C300 + residual b2 K4096",
         {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300,
          "rerank": "residual", "rerank_bits": 2, "rerank_centroids": 4096}),
        ("two_stage ivf K4096 n4 C300 exact f16 rerank",
         {"first_stage": "ivf", "centroids": 4096, "nprobe": 4, "candidates": 300}),
    ]  # fmt: skip
    for name, opts in pipelines:
        flat = FlatMultiVectors(128)
        if opts.get("rerank") != "residual":
            flat.append(pages)
        two = TwoStageIndex(128, flat.take, **opts)
        two.add(keys, pages)
        record(name, two, {})
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
