"""Grid-search hybrid fusion settings on a data set, with the library's own fusion classes.

Builds (or reuses) the default hybrid index through the eval harness, asks every leg once for its
top ``--candidates`` pages per query and scope, then scores each fusion setting on those cached
leg rankings - exactly what ``HybridRetriever`` computes, without re-running the legs.

    uv run python benchmarks/tune_fusion.py --dataset ../shared/data/mmlongbench-dev \
        --ocr-engine tesseract --out benchmarks/results/mmlongbench-dev/fusion_grid.tsv

This is how the defaults in ``mm_retriever/config.py`` (DEFAULT_LEG_WEIGHTS, default_fusion)
were chosen; tune on a development set only and prefer a setting on a plateau.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from mm_retriever.eval.cli import default_workdir
from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.eval.pipelines import make_pipeline
from mm_retriever.fusion import RRFFusion, WeightedFusion

SCOPES = ("within-doc", "corpus")


def leg_rankings(dataset, pipeline, candidates: int) -> dict:
    """{scope: {query_id: {leg: [LegHit, ...]}}} from the pipeline's index."""
    retriever = pipeline._retriever
    out: dict = {}
    for scope in SCOPES:
        out[scope] = {}
        for q in dataset.queries:
            filters = {"doc_id": pipeline._doc_ids[q.doc]} if scope == "within-doc" else None
            out[scope][q.query_id] = retriever.leg_hits(q.text, candidates, filters)
    return out


def score(dataset, pipeline, hits: dict, fusion, legs: list[str]) -> dict:
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    sources = {q.query_id: q.sources for q in dataset.queries}
    out = {}
    for scope in SCOPES:
        rankings = {}
        for qid, per_leg in hits[scope].items():
            fused = fusion.fuse({leg: per_leg[leg] for leg in legs if leg in per_leg}, 100)
            rankings[qid] = [(pipeline._names[h.doc_id], h.page_index) for h in fused]
        out[scope] = evaluate_rankings(rankings, qrels, sources)
    return out


def grid(legs: list[str]):
    """(label, fusion, legs) candidates: RRF k x weights, weighted min-max / z-score x weights."""
    other = [leg for leg in legs if leg not in ("bm25", "text")]
    for k, wt, wo in itertools.product((3, 5, 10, 60), (0.5, 0.75, 1.0), (0.0, 0.25, 0.5)):
        w = {"bm25": 1.0, "text": wt, **{leg: wo for leg in other}}
        yield f"rrf k={k} text={wt} other={wo}", RRFFusion(k, w), _used(legs, w)
    text_weights = (0.5, 0.6, 0.65, 0.75, 0.85, 1.0)
    other_weights = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5)
    for norm, wt, wo in itertools.product(("minmax", "zscore"), text_weights, other_weights):
        w = {"bm25": 1.0, "text": wt, **{leg: wo for leg in other}}
        yield f"{norm} text={wt} other={wo}", WeightedFusion(w, norm), _used(legs, w)


def _used(legs: list[str], weights: dict[str, float]) -> list[str]:
    return [leg for leg in legs if weights.get(leg, 1.0) > 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--ocr-engine", default=None)
    ap.add_argument("--workdir", type=Path, default=default_workdir())
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    dataset = load_dataset(args.dataset)
    pipeline = make_pipeline("hybrid", ocr_engine=args.ocr_engine)
    pipeline.build(dataset, args.workdir, progress=True)
    legs = list(pipeline._retriever.leg_names)
    hits = leg_rankings(dataset, pipeline, args.candidates)
    rows = [
        "setting\twithin nDCG@5\tcorpus nDCG@5\t"
        + "\t".join(f"within {s}" for s in ("chart", "table", "figure", "text", "layout"))
    ]
    for label, fusion, used in [
        *[(f"{leg} alone", RRFFusion(60), [leg]) for leg in legs],
        *grid(legs),
    ]:
        res = score(dataset, pipeline, hits, fusion, used)
        by = res["within-doc"]["by_source"]
        rows.append(
            f"{label}\t{res['within-doc']['ndcg@5']:.3f}\t{res['corpus']['ndcg@5']:.3f}\t"
            + "\t".join(
                f"{by.get(s, {}).get('ndcg@5', 0):.3f}"
                for s in ("chart", "table", "figure", "text", "layout")
            )
        )
        print(rows[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
