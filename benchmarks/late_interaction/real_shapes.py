"""The page leg at real page shapes (issue 25): ~1,000 vectors a page drawn from real tokens.

Pages: ``--vectors`` vectors each (default: colSmol's measured count a letter page, no pooling:
``benchmarks/page_encode/results.json``), drawn from the dev proxy's real token vectors
(``residual_quality.py``'s cache: MiniLM tokens of 1,405 mmlongbench-dev pages, 128-d). A
synthetic page takes a real page as template: 70 % of its vectors are tokens of that page, 30 %
tokens of other pages of the same document, each plus noise of norm ``NOISE`` (from a bank of
2^20 Gaussian vectors), L2-normalised. Queries: the 200 real dev questions' token vectors (the
first ``--queries``). Ground truth: exact float16 MaxSim over every page, one streaming pass.

Representations (rows of ``scale``):
- ``two_stage-ivf-K{K}-n{n}-C{C}+residual-b2``: centroid lists in RAM pick C pages, reranked
  from residual codes (centre id + 2 bits a dimension; saved to disk and memory-mapped on reopen);
  no float vectors anywhere at query time.
- ``exact-f16`` (10k only: 2.8 GB of RAM at 10k): exact MaxSim over every vector in RAM.
- ``two_stage-ivf_binary-...`` (10k only): the previous default at these shapes (sign bits in RAM,
  float16 rerank from RAM standing in for the table read).

    uv run --frozen python benchmarks/late_interaction/real_shapes.py --sizes 10000 \
        --cache /tmp/proxy.npz --work /tmp/rs \
        --json benchmarks/late_interaction/results_real_shapes.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from residual_quality import load_proxy

from mm_retriever.multivector import ExactIndex, FlatMultiVectors, TwoStageIndex
from mm_retriever.multivector.kernel import maxsim_scores_batch
from mm_retriever.multivector.persist import load_state, save_state

NOISE = 0.4
OWN_PAGE = 0.7
CHUNK = 250
NOTES = (
    "ram: centroid lists + centres + keys; disk: the saved state (codes, lists, codec), "
    "memory-mapped on reopen; reopen_s: load + restore + first query"
)
DIM = 128


class Corpus:
    """Synthetic pages from real token vectors (deterministic per chunk)."""

    def __init__(self, proxy: dict[str, Any], vectors: int, seed: int = 0) -> None:
        self.vectors = vectors
        self.seed = seed
        self.pages = [np.asarray(p, np.float32) for p in proxy["pages"]]
        by_doc: dict[str, list[int]] = defaultdict(list)
        for i, (doc, _) in enumerate(proxy["keys"]):
            by_doc[doc].append(i)
        self.doc_tokens = {
            d: np.concatenate([self.pages[i] for i in ix]) for d, ix in by_doc.items()
        }
        self.doc_of = [doc for doc, _ in proxy["keys"]]
        rng = np.random.default_rng(seed + 99)
        self.noise = (NOISE / DIM**0.5) * rng.standard_normal((1 << 20, DIM)).astype(np.float32)

    def chunk(self, start: int, n: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, start])
        out = []
        for t in rng.integers(len(self.pages), size=n):
            own, doc = self.pages[t], self.doc_tokens[self.doc_of[t]]
            n_own = round(OWN_PAGE * self.vectors)
            toks = np.concatenate([
                own[rng.integers(own.shape[0], size=n_own)],
                doc[rng.integers(doc.shape[0], size=self.vectors - n_own)],
            ])  # fmt: skip
            toks = toks + self.noise[rng.integers(self.noise.shape[0], size=self.vectors)]
            toks /= np.linalg.norm(toks, axis=1, keepdims=True)
            out.append(toks.astype(np.float16))
        return out


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(index: Any, queries: list[torch.Tensor], truth: np.ndarray) -> dict[str, float]:
    index.search(queries[0], 10)  # warm
    times, hits = [], 0
    for q, t in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        rows, _ = index.search(q, 10)
        times.append(time.perf_counter() - t0)
        hits += len(set(rows.tolist()) & set(t.tolist()))
    return {
        "p50_ms": round(1e3 * float(np.percentile(times, 50)), 2),
        "p95_ms": round(1e3 * float(np.percentile(times, 95)), 2),
        "recall_at_10": round(hits / (10 * len(queries)), 4),
    }


def run_size(n_pages: int, corpus: Corpus, queries: list[torch.Tensor], args: Any, log: Any):
    keys = [(f"doc{i // 20:07d}", i % 20) for i in range(n_pages)]
    k = args.centroids
    opts = {"first_stage": "ivf", "centroids": k, "nprobe": 4, "candidates": 300,
            "rerank": "residual", "rerank_bits": 2, "rerank_centroids": k}  # fmt: skip
    two = TwoStageIndex(DIM, None, **opts)
    keep_floats = n_pages <= args.float_rows_max
    flat = FlatMultiVectors(DIM) if keep_floats else None
    scores, gen_s, gt_s, build_s = [], 0.0, 0.0, 0.0
    for start in range(0, n_pages, CHUNK):
        t0 = time.perf_counter()
        mats = corpus.chunk(start, min(CHUNK, n_pages - start))
        gen_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        lengths = np.asarray([m.shape[0] for m in mats])
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        scores.append(maxsim_scores_batch(queries, np.concatenate(mats), offsets))
        gt_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        two.add(keys[start : start + len(mats)], mats)
        build_s += time.perf_counter() - t0
        if flat is not None:
            flat.append(mats)
        if start % (20 * CHUNK) == 0:
            log(f"  {n_pages}: {start + len(mats)} pages, gen {gen_s:.0f}s truth {gt_s:.0f}s "
                f"build {build_s:.0f}s")  # fmt: skip
    truth = np.argsort(-np.concatenate(scores, axis=1), axis=1, kind="stable")[:, :10]
    rows = []
    base = {"pages": n_pages, "page_vectors": corpus.vectors}
    # save the first stage + codes, reopen memory-mapped as the next process would
    root = Path(args.work) / f"state-{n_pages}"
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    save_state(root, 1, two.config(), two.state())
    save_s = time.perf_counter() - t0
    disk = folder_bytes(root)
    ram_first = two.nbytes  # ivf lists + centres + keys
    config = two.config()
    codes_bytes = two.codes_nbytes
    del two
    t0 = time.perf_counter()
    _, arrays = load_state(root, 1, config)
    two = TwoStageIndex(DIM, None, **opts)
    two.restore(arrays)
    two.search(queries[0], 10)
    reopen_s = time.perf_counter() - t0
    for nprobe, cands in ((4, 100), (4, 300), (8, 300)):
        two.first.nprobe, two.candidates = nprobe, cands
        row = {**base, "representation": f"two_stage-ivf-K{k}-n{nprobe}-C{cands}+residual-b2",
               **measure(two, queries, truth),
               "ram_bytes_per_page": round(ram_first / n_pages, 1),
               "disk_bytes_per_page": round(disk / n_pages, 1),
               "build_s": round(build_s, 1), "reopen_s": round(reopen_s, 2),
               "codes_bytes_per_page": round(codes_bytes / n_pages, 1),
               "save_s": round(save_s, 1),
               "notes": NOTES}  # fmt: skip
        log(json.dumps(row))
        rows.append(row)
    if flat is not None:
        vals = flat.values
        t0 = time.perf_counter()
        exact = ExactIndex(DIM)
        exact.vectors = flat
        exact._rows.append(keys)
        row = {**base, "representation": "exact-f16", **measure(exact, queries, truth),
               "ram_bytes_per_page": round(flat.nbytes / n_pages, 1),
               "disk_bytes_per_page": round(vals.nbytes / n_pages, 1),
               "build_s": round(time.perf_counter() - t0, 1), "reopen_s": None,
               "notes": "every float16 vector in RAM; disk: the float16 vectors alone"}  # fmt: skip
        log(json.dumps(row))
        rows.append(row)
        t0 = time.perf_counter()
        ib = TwoStageIndex(DIM, flat.take, first_stage="ivf_binary", centroids=k, nprobe=4,
                           prefilter=2000, candidates=300)  # fmt: skip
        for s in range(0, n_pages, 2000):
            ib.add(keys[s : s + 2000], [flat.row(i) for i in range(s, min(s + 2000, n_pages))])
        row = {**base, "representation": f"two_stage-ivf_binary-K{k}-n4-P2000-C300",
               **measure(ib, queries, truth),
               "ram_bytes_per_page": round(ib.nbytes / n_pages, 1),
               "disk_bytes_per_page": round(vals.nbytes / n_pages, 1),
               "build_s": round(time.perf_counter() - t0, 1), "reopen_s": None,
               "notes": "the previous default: sign bits in RAM; float16 rerank (read from RAM "
                        "here, from the Lance table in the leg)"}  # fmt: skip
        log(json.dumps(row))
        rows.append(row)
        del ib, exact, flat
    extra = {"generate_s": round(gen_s, 1), "ground_truth_s": round(gt_s, 1)}
    return rows, extra


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000")
    ap.add_argument("--vectors", type=int, default=0)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--centroids", type=int, default=65536)
    ap.add_argument("--float-rows-max", type=int, default=10000)
    ap.add_argument("--cache", default="/tmp/proxy.npz")
    ap.add_argument("--work", default="/tmp/real_shapes")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    vectors = args.vectors
    if not vectors:
        enc = json.loads((Path(__file__).parents[1] / "page_encode" / "results.json").read_text())
        smol = [m for m in enc["models"] if m.get("model") == "vidore/colSmol-256M"]
        vectors = next(m["vectors_per_page"] for m in smol if "vectors_per_page" in m)
    torch.manual_seed(0)
    proxy = load_proxy(Path(args.cache))
    corpus = Corpus(proxy, vectors)
    queries = [
        torch.from_numpy(np.asarray(q, np.float32)) for q in proxy["queries"][: args.queries]
    ]
    Path(args.work).mkdir(parents=True, exist_ok=True)
    out_path = Path(args.json) if args.json else None
    out: dict[str, Any] = {"scale": []}
    if out_path and out_path.exists():
        out = json.loads(out_path.read_text())
    sizes = [int(s) for s in args.sizes.split(",")]
    out["scale"] = [r for r in out.get("scale", []) if r["pages"] not in sizes]
    out.setdefault("runs", []).append({
        "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_at_start": list(os.getloadavg()), "threads": torch.get_num_threads(),
        "shared_box": "yes: 2 cores shared with six other engineers' jobs and a running eval",
    })  # fmt: skip

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    for n in sizes:
        rows, extra = run_size(n, corpus, queries, args, log)
        out["scale"].extend(rows)
        out["runs"][-1][f"{n}"] = extra
        if out_path:
            out_path.write_text(json.dumps(out, indent=1) + "\n")
    out["runs"][-1]["loadavg_at_end"] = list(os.getloadavg())
    if out_path:
        out_path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
