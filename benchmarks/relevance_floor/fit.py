"""Fit and check the relevance floor: ``RetrievedPage.confidence`` (``mm_retriever.relevance``).

    MM_RETRIEVER_CACHE=/work/mmcache uv run --frozen python benchmarks/relevance_floor/fit.py \
        --tune mmlongbench-dev=INDEX_DIR --check financebench-dev=INDEX_DIR \
        --out benchmarks/relevance_floor/results.json

Each ``NAME=INDEX_DIR`` is a dev set under ``../shared/data/NAME`` and the index the eval
harness built of it (opened read-only). For each set, the default retriever (k=5) is asked:

- positives: each dev question over the whole index (which holds its document);
- negatives: the same question with its document filtered out (``{"doc_id": {"ne": ...}}``),
  the other set's questions (about documents not in this index), and seeded gibberish.

A hit is labelled 1 when it comes from the question's document in the positive setting. A
logistic map (balanced classes) of the hits' raw leg scores (``relevance.features``) is fitted
on the tuning set for each set of calibrated legs, and checked on both sets: hit-level AUC, and
question-level AUC of the best hit's confidence (answerable vs not), with the share of
answerable questions under the default floor. The printed constants go into
``mm_retriever/relevance.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mm_retriever.eval.datasets import load_dataset
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import Query
from mm_retriever.ranking import relevance

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
K = 5
SUBSETS = [("bm25", "text"), ("bm25",), ("text",)]


def gibberish(n: int, seed: int = 24) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        " ".join(
            "".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
            for _ in range(rng.randint(3, 9))
        )
        + "?"
        for _ in range(n)
    ]


def collect(name: str, index_dir: str, other: list[str], n_gibberish: int) -> dict:
    """Every hit's raw leg scores and label, per question and setting."""
    dataset = load_dataset(DATA / name)
    ids = dataset.document_ids
    index = MultimodalIndex.open(index_dir)
    retriever = index.retriever(include_images=False, write_images=False)
    legs = {n: retriever.index.legs[n] for n in retriever.leg_names}
    kinds = {n: leg.kind for n, leg in legs.items() if getattr(leg, "kind", "") in ("text", "bm25")}
    signatures = {leg.kind: relevance.leg_signature(leg) for n, leg in legs.items() if n in kinds}
    questions = []

    def ask(qid: str, text: str, setting: str, doc: str | None, filters: dict | None) -> None:
        pages = retriever.retrieve(text, k=K, filters=filters)
        prepared = retriever.prepare(Query(text=text)).text
        hits = [
            {
                "scores": {kinds.get(n, n): v for n, v in p.leg_scores.items()},
                "ranks": {kinds.get(n, n): v for n, v in p.leg_ranks.items()},
                "fused": p.score,
                "label": int(setting == "positive" and p.doc_id == doc),
            }
            for p in pages
        ]
        questions.append(
            {"id": qid, "setting": setting, "words": relevance.query_words(prepared), "hits": hits}
        )

    t0 = time.perf_counter()
    indexed = {d["doc_id"] for d in index.documents()}  # an index still being built: its part
    asked = [q for q in dataset.queries if ids[q.doc] in indexed]
    for q in asked:
        doc = ids[q.doc]
        ask(q.query_id, q.text, "positive", doc, None)
        ask(q.query_id, q.text, "doc_removed", doc, {"doc_id": {"ne": doc}})
    for i, text in enumerate(other):
        ask(f"other-{i}", text, "other_set", None, None)
    for i, text in enumerate(gibberish(n_gibberish)):
        ask(f"gibberish-{i}", text, "gibberish", None, None)
    return {
        "name": name,
        "index": index_dir,
        "legs": sorted(legs),
        "signatures": signatures,
        "seconds": round(time.perf_counter() - t0, 1),
        "documents_indexed": f"{len(indexed)} of {len(ids)}",
        "questions_with_their_document_indexed": f"{len(asked)} of {len(dataset.queries)}",
        "questions": questions,
    }


def matrix(questions: list[dict], subset: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    legs = {k: k for k in subset}
    x = [
        [relevance.features(h["scores"], legs)[f] for f in subset]
        for q in questions
        for h in q["hits"]
    ]
    y = [h["label"] for q in questions for h in q["hits"]]
    return np.asarray(x, dtype=float).reshape(-1, len(subset)), np.asarray(y)


def fit(questions: list[dict]) -> dict[tuple[str, ...], dict[str, float]]:
    models = {}
    for subset in SUBSETS:
        x, y = matrix(questions, subset)
        lr = LogisticRegression(class_weight="balanced", C=10.0).fit(x, y)
        models[subset] = {
            "intercept": round(float(lr.intercept_[0]), 4),
            **{f: round(float(w), 4) for f, w in zip(subset, lr.coef_[0], strict=True)},
        }
    return models


def check(questions: list[dict], model: dict[str, float], subset: tuple[str, ...]) -> dict:
    legs = {k: k for k in subset}
    saved = relevance.MODELS
    relevance.MODELS = {subset: model}
    try:

        def conf(q: dict, h: dict) -> float:
            return relevance.confidence(h["scores"], legs) or 0.0

        hits = [(conf(q, h), h["label"]) for q in questions for h in q["hits"]]
        best = {
            (q["id"], q["setting"]): max((conf(q, h) for h in q["hits"]), default=0.0)
            for q in questions
        }
    finally:
        relevance.MODELS = saved
    answerable = [v for (_, s), v in best.items() if s == "positive"]
    out = {
        "hit_auc": round(roc_auc_score([y for _, y in hits], [c for c, _ in hits]), 4),
        "n_hits": len(hits),
        "answerable_questions": len(answerable),
        "answerable_under_floor": round(
            float(np.mean([v < relevance.WEAK_BELOW for v in answerable])), 4
        ),
    }
    for setting in ("doc_removed", "other_set", "gibberish"):
        negative = [v for (_, s), v in best.items() if s == setting]
        if not negative:
            continue
        y = [1] * len(answerable) + [0] * len(negative)
        out[f"question_auc_vs_{setting}"] = round(roc_auc_score(y, answerable + negative), 4)
        out[f"{setting}_under_floor"] = round(
            float(np.mean([v < relevance.WEAK_BELOW for v in negative])), 4
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tune", required=True, help="NAME=INDEX_DIR: fit on this set")
    ap.add_argument("--check", action="append", default=[], help="NAME=INDEX_DIR: check only")
    ap.add_argument("--gibberish", type=int, default=100)
    ap.add_argument(
        "--hits", type=Path, default=Path(__file__).parent / "hits", help="collected hits, per set"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sets = [args.tune, *args.check]
    names = ["mmlongbench-dev", "financebench-dev"]
    texts = {n: [q.text for q in load_dataset(DATA / n).queries] for n in names}
    collected = []
    args.hits.mkdir(parents=True, exist_ok=True)
    for s in sets:
        name, index_dir = s.split("=", 1)
        cache = args.hits / f"{name}.json"
        if cache.exists():
            collected.append(json.loads(cache.read_text()))
            continue
        other = [t for n in names if n != name for t in texts[n]]  # about documents not here
        collected.append(collect(name, index_dir, other, args.gibberish))
        cache.write_text(json.dumps(collected[-1]))
        print(f"{name}: {len(collected[-1]['questions'])} questions asked", flush=True)
    models = fit(collected[0]["questions"])
    report = {
        "k": K,
        "weak_below": relevance.WEAK_BELOW,
        "signatures": collected[0]["signatures"],
        "models": {"+".join(s): m for s, m in models.items()},
        "sets": {
            c["name"]: {
                "role": "tune" if i == 0 else "check",
                "legs": c["legs"],
                "seconds": c["seconds"],
                "documents_indexed": c.get("documents_indexed"),
                "questions_asked": c.get("questions_with_their_document_indexed"),
                **{"+".join(s): check(c["questions"], models[s], s) for s in SUBSETS},
            }
            for i, c in enumerate(collected)
        },
        "command": "MM_RETRIEVER_CACHE=/work/mmcache uv run --frozen python "
        "benchmarks/relevance_floor/fit.py "
        + " ".join(f"--{'tune' if i == 0 else 'check'} {s}" for i, s in enumerate(sets)),
        "machine": subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()[
            :20
        ],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
