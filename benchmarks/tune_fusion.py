"""Tune hybrid fusion and the document prior on cached leg rankings, with a held-out half of dev.

Builds (or reuses) the default hybrid index through the eval harness, asks every leg once for its
top ``--candidates`` pages per query and scope (cached in ``--cache``, so a re-run only scores),
scores every document with :class:`DocumentPrior` per query, then scores each setting with the
library's own fusion code - exactly what ``HybridRetriever.retrieve`` computes, without re-running
the legs. The dev documents are split in two halves by a hash of the file name: settings are
chosen on half A ("tune") and checked on half B ("check"); the chosen setting is compared with
the current default by a paired randomisation test on all queries and on each half.

    uv run --frozen python benchmarks/tune_fusion.py --dataset ../shared/data/mmlongbench-dev \
        --workdir /work/scratch/quality/work --cache /work/scratch/quality/legs.pkl \
        --out benchmarks/results/mmlongbench-dev/fusion_grid.tsv

Tune on a development set only and prefer a setting on a plateau.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import pickle
from pathlib import Path
from typing import Any

from mm_retriever.config import DEFAULT_LEG_WEIGHTS
from mm_retriever.eval.cli import default_workdir
from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.eval.pipelines import make_pipeline
from mm_retriever.eval.significance import paired_test
from mm_retriever.protocols import Query
from mm_retriever.ranking.document_prior import DocumentPrior
from mm_retriever.ranking.fusion import RRFFusion, WeightedFusion, apply_document_prior
from mm_retriever.ranking.hybrid import DEFAULT_DOCUMENT_PRIOR
from mm_retriever.types import FusedHit

SCOPES = ("within-doc", "corpus")
SOURCES = ("chart", "table", "figure", "text", "layout")
PRIOR_BOOSTS = (1, 3)
# the current leg weights plus a document prior: the candidates for a new default
PROPOSED = (
    "zscore text=0.75 other=0.2 prior=0.5 boost=pages",
    "zscore text=0.75 other=0.2 prior=1.0 boost=pages",
    "zscore text=0.75 other=0.2 prior=0.5 boost=3",
)


def dev_half(doc_name: str) -> str:
    """``"A"`` (tune) or ``"B"`` (check), fixed by a hash of the document's file name."""
    return "A" if hashlib.sha256(doc_name.encode()).digest()[0] % 2 == 0 else "B"


class IndexView:
    """An existing (possibly still growing) index opened read-only, restricted to its committed
    documents: what ``cached_hits`` needs from an eval pipeline (``_retriever``, ``_doc_ids``,
    ``_names``) plus the ``filters`` that keep corpus scope to those documents."""

    def __init__(self, dataset, path: Path) -> None:
        from mm_retriever.index import MultimodalIndex

        index = MultimodalIndex.open(path)
        self._retriever = index.retriever(include_images=False, write_images=False)
        stored = {d["doc_id"] for d in index.documents()}
        self._doc_ids = {n: i for n, i in dataset.document_ids.items() if i in stored}
        self._names = {i: n for n, i in self._doc_ids.items()}
        self.corpus_filter = {"doc_id": sorted(stored)}


def restrict(dataset, names: set[str]):
    """The data set less the documents (and their queries) not in ``names``."""
    from mm_retriever.eval.datasets import EvalDataset

    queries = [
        q
        for q in dataset.queries
        if q.doc in names and all(d in names for d, _ in dataset.qrels[q.query_id])
    ]
    files = [f for f in dataset.files if f.name in names]
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in queries}
    return EvalDataset(dataset.name, files, queries, qrels)


def cached_hits(dataset, pipeline, candidates: int) -> dict[str, Any]:
    """{"legs": {scope: {qid: {leg: [LegHit]}}}, "docs": {boost: {qid: {doc_id: score}}}}."""
    retriever = pipeline._retriever
    store = retriever.index.store
    out: dict[str, Any] = {"legs": {s: {} for s in SCOPES}, "docs": {}}
    for q in dataset.queries:
        for scope in SCOPES:
            filters = getattr(pipeline, "corpus_filter", None)
            if scope == "within-doc":
                filters = {"doc_id": pipeline._doc_ids[q.doc]}
            out["legs"][scope][q.query_id] = retriever.leg_hits(q.text, candidates, filters)
    for boost in PRIOR_BOOSTS:
        prior = DocumentPrior(1.0, title_boost=boost)
        out["docs"][boost] = {
            q.query_id: prior.scores(store, retriever.prepare(Query.of(q.text)).text or "")
            for q in dataset.queries
        }
    stored = set(pipeline._names)
    for boost in PRIOR_BOOSTS:  # documents not (yet) committed do not compete
        for qid, scores in out["docs"][boost].items():
            out["docs"][boost][qid] = {d: v for d, v in scores.items() if d in stored}
    return out


class _Names:
    """File name <-> doc_id maps of a cached run."""

    def __init__(self, doc_ids: dict[str, str]) -> None:
        self._doc_ids = dict(doc_ids)
        self._names = {i: n for n, i in doc_ids.items()}


def rankings(dataset, pipeline, cached, fusion, legs, prior) -> dict[str, dict[str, list]]:
    """{scope: {qid: [(file name, page), ...]}} for one setting; ``prior``: (weight, boost)."""
    out: dict[str, dict[str, list]] = {}
    for scope in SCOPES:
        out[scope] = {}
        for q in dataset.queries:
            per_leg = cached["legs"][scope][q.query_id]
            fused = fusion.fuse({leg: per_leg[leg] for leg in legs if leg in per_leg}, 1000)
            fused = _prior(fused, cached, q.query_id, prior)
            out[scope][q.query_id] = [(pipeline._names[h.doc_id], h.page_index) for h in fused]
    return out


def _features(per_leg: dict, legs: list[str]) -> tuple[list, list]:
    """Pages (union of the legs' hits) and their features: per leg z-score (lowest z when
    missing), reciprocal rank (0 when missing) and a found flag."""
    keys: list = []
    seen: set = set()
    for leg in legs:
        for h in per_leg.get(leg, []):
            if h.key not in seen:
                seen.add(h.key)
                keys.append(h.key)
    cols = []
    for leg in legs:
        hits = per_leg.get(leg, [])
        scores = [float(h.score) for h in hits]
        mean = sum(scores) / len(scores) if scores else 0.0
        std = (sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5 if scores else 0.0
        z = {h.key: ((float(h.score) - mean) / std if std > 0 else 0.0) for h in hits}
        rr = {h.key: 1.0 / (i + 1) for i, h in enumerate(hits)}
        floor = min(z.values(), default=0.0)
        cols.append([z.get(k, floor) for k in keys])
        cols.append([rr.get(k, 0.0) for k in keys])
        cols.append([1.0 if k in z else 0.0 for k in keys])
    return keys, [list(r) for r in zip(*cols, strict=True)] if keys else []


def learned_rankings(dataset, pipeline, cached, legs, train: set[str], prior) -> dict:
    """Logistic regression on the leg features, trained on ``train`` queries (both scopes'
    candidates), ranking every query by the predicted log-odds of relevance."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for scope in SCOPES:
        for q in dataset.queries:
            if q.query_id not in train:
                continue
            keys, feats = _features(cached["legs"][scope][q.query_id], legs)
            rel = dataset.qrels[q.query_id]
            xs += feats
            ys += [int(rel.get((pipeline._names[d], p), 0) > 0) for d, p in keys]
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(xs, ys)
    out: dict = {}
    for scope in SCOPES:
        out[scope] = {}
        for q in dataset.queries:
            keys, feats = _features(cached["legs"][scope][q.query_id], legs)
            score = model.decision_function(feats) if feats else []
            fused = [FusedHit(d, p, float(s)) for (d, p), s in zip(keys, score, strict=True)]
            fused.sort(key=lambda h: -h.score)
            fused = _prior(fused, cached, q.query_id, prior)
            out[scope][q.query_id] = [(pipeline._names[h.doc_id], h.page_index) for h in fused]
    return out


def _prior(fused: list, cached: dict, qid: str, prior: tuple) -> list:
    """Apply a document prior: ``(weight, boost)`` with boost a title boost (document BM25) or
    ``"pages"`` (a document scores the sum of its pages' fused scores among the top 20)."""
    weight, boost = prior
    if weight <= 0 or len({h.doc_id for h in fused}) < 2:
        return fused
    if boost == "pages":
        docs: dict[str, float] = {}
        for h in fused[:20]:
            docs[h.doc_id] = docs.get(h.doc_id, 0.0) + h.score
        return apply_document_prior(fused, docs, weight)
    return apply_document_prior(fused, cached["docs"][boost][qid], weight)


def settings(legs: list[str]):
    """(label, fusion, legs, (prior weight, title boost or "pages")) candidates."""
    other = [leg for leg in legs if leg not in ("bm25", "text")]
    prior_grid = [(0.0, 1)] + [
        (w, b) for w, b in itertools.product((0.5, 1.0), (*PRIOR_BOOSTS, "pages"))
    ]
    for leg in legs:
        yield f"{leg} alone", RRFFusion(60), [leg], (0.0, 1)
    yield "rrf k=60", RRFFusion(60), legs, (0.0, 1)
    for wt, wo, prior in itertools.product((0.5, 0.75, 1.0), (0.0, 0.2), prior_grid):
        w = {"bm25": 1.0, "text": wt, **dict.fromkeys(other, wo)}
        used = [leg for leg in legs if w.get(leg, 1.0) > 0]
        label = f"zscore text={wt} other={wo} prior={prior[0]} boost={prior[1]}"
        yield label, WeightedFusion(w, "zscore"), used, prior


# rows of the grid that go into the eval-style report (name in the report)
REPORTED = {
    "default": "hybrid",
    "bm25 alone": "bm25",
    "text alone": "text",
    "figure alone": "figure",
    "zscore text=0.75 other=0.2 prior=0.5 boost=pages": "hybrid+prior-pages-0.5",
    "zscore text=0.75 other=0.2 prior=0.5 boost=3": "hybrid+prior-bm25-0.5",
}


def write_eval_report(
    dataset,
    kept: dict,
    qrels: dict,
    sources: dict,
    out: Path,
    by: str = "benchmarks/tune_fusion.py",
) -> None:
    """Results JSON (one a scope) and report.md in the ``eval`` layout, with the paired
    comparisons with ``hybrid`` (the current default) and the slices; ``by``: the script."""
    from mm_retriever.eval.report import results_document, write_json, write_report
    from mm_retriever.eval.slices import query_slices

    slices = query_slices(dataset.queries)
    docs = []
    for scope in SCOPES:
        pipes = {}
        for name, ranked in kept.items():
            res = evaluate_rankings(ranked[scope], qrels, sources, slices=slices)
            res.pop("n")
            pipes[name] = {**res, "kind": "ours", "n_queries": len(qrels)}
        doc = results_document(dataset.name, scope, pipes, slices)
        write_json(doc, out / f"results.{scope}.json")
        docs.append(doc)
    header = (
        f"# Cached-leg evaluation on {dataset.name} ({len(dataset.files)} documents, "
        f"{len(qrels)} queries) by {by}\n"
    )
    print(f"wrote {write_report(docs, out, header=header)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--ocr-engine", default=None)
    ap.add_argument("--workdir", type=Path, default=default_workdir())
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--cache", type=Path, default=None, help="pickle of the leg rankings")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None, help="folder for an eval-style report")
    ap.add_argument(
        "--index",
        type=Path,
        default=None,
        help="use this existing index as it is (its committed documents only) instead of "
        "building the data set's default index",
    )
    args = ap.parse_args()
    dataset = load_dataset(args.dataset)
    if args.cache is not None and args.cache.exists():
        cached = pickle.loads(args.cache.read_bytes())
        pipeline = cached["view"]
        dataset = restrict(dataset, set(pipeline["doc_ids"]))
        pipeline = _Names(pipeline["doc_ids"])
    else:
        if args.index is not None:
            pipeline = IndexView(dataset, args.index)
            dataset = restrict(dataset, set(pipeline._doc_ids))
        else:
            pipeline = make_pipeline("hybrid", ocr_engine=args.ocr_engine)
            pipeline.build(dataset, args.workdir, progress=False)
        cached = cached_hits(dataset, pipeline, args.candidates)
        cached["view"] = {"doc_ids": pipeline._doc_ids}
        if args.cache is not None:
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_bytes(pickle.dumps(cached))
    legs = sorted({leg for per in cached["legs"]["corpus"].values() for leg in per})
    print(
        f"{len(dataset.files)} documents, {len(dataset.queries)} queries, legs {legs}", flush=True
    )
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    sources = {q.query_id: q.sources for q in dataset.queries}
    half = {q.query_id: dev_half(q.doc or "") for q in dataset.queries}
    print(
        f"dev halves: A {sum(h == 'A' for h in half.values())} queries, "
        f"B {sum(h == 'B' for h in half.values())} queries",
        flush=True,
    )

    def subset(scores: dict, h: str | None) -> dict:
        keep = {q: v for q, v in qrels.items() if h is None or half[q] == h}
        return evaluate_rankings({q: scores[q] for q in keep}, keep, {q: sources[q] for q in keep})

    head = ["setting"]
    for scope, h in itertools.product(SCOPES, ("all", "A", "B")):
        head.append(f"{scope} {h} nDCG@5")
    head += [f"within all {s}" for s in SOURCES] + [f"corpus all {s}" for s in SOURCES]
    rows = ["\t".join(head)]
    results: dict[str, tuple[dict, dict]] = {}
    kept: dict[str, dict] = {}  # report name -> rankings
    default_w = {leg: DEFAULT_LEG_WEIGHTS.get(leg, 1.0) for leg in legs}
    default_label = "default"
    grid = [
        # the library's default: z-score fusion and the whole-document BM25 prior
        (default_label, WeightedFusion(default_w, "zscore"), legs, (DEFAULT_DOCUMENT_PRIOR, 3)),
        *settings(legs),
    ]
    train_a = {q for q, h in half.items() if h == "A"}
    grid += [
        (f"learned(A) prior={w} boost={b}", "learned", legs, (w, b))
        for w, b in [(0.0, 1), (0.5, 3), (0.5, "pages")]
    ]
    for label, fusion, used, prior in grid:
        if fusion == "learned":
            ranked = learned_rankings(dataset, pipeline, cached, used, train_a, prior)
        else:
            ranked = rankings(dataset, pipeline, cached, fusion, used, prior)
        res = {
            s: {h: subset(ranked[s], None if h == "all" else h) for h in ("all", "A", "B")}
            for s in SCOPES
        }
        results[label] = (res, prior)
        if label in REPORTED:
            kept[REPORTED[label]] = ranked
        cells = [label]
        cells += [f"{res[s][h]['ndcg@5']:.3f}" for s in SCOPES for h in ("all", "A", "B")]
        for s in SCOPES:
            by = res[s]["all"]["by_source"]
            cells += [f"{by.get(src, {}).get('ndcg@5', 0):.3f}" for src in SOURCES]
        rows.append("\t".join(cells))
        print(rows[-1], flush=True)
    # choose on half A (mean of both scopes), check on half B against the default; the learned
    # fusions are trained on A, so only their half-B numbers are fair and they are not chosen
    tuned = [lab for lab in results if lab != default_label and "alone" not in lab]
    tuned = [lab for lab in tuned if not lab.startswith("learned")]
    best = max(tuned, key=lambda lab: sum(results[lab][0][s]["A"]["ndcg@5"] for s in SCOPES))
    lines = [f"chosen on half A: {best}", f"library default prior weight: {DEFAULT_DOCUMENT_PRIOR}"]
    learned = [lab for lab in results if lab.startswith("learned")]
    proposed = [lab for lab in PROPOSED if lab in results and lab != best]
    for label in [best, *proposed, *learned]:
        for scope, h in itertools.product(SCOPES, ("A", "B", "all")):
            if label in learned and h != "B":
                continue
            a = results[label][0][scope][h]["per_query"]
            b = results[default_label][0][scope][h]["per_query"]
            qids = sorted(a)
            c = paired_test(
                [a[q]["ndcg@5"] for q in qids],
                [b[q]["ndcg@5"] for q in qids],
                pipeline=label,
                reference_name="default",
            )
            lines.append(
                f"{label} | {scope} half {h} (n={c.n}): {c.mean:.3f} vs default "
                f"{c.reference_mean:.3f}, diff {c.diff:+.3f} [95% CI {c.ci_low:+.3f}, "
                f"{c.ci_high:+.3f}], p(rand) {c.p_randomization:.3g}, p(t) {c.p_ttest:.3g}: "
                f"{c.verdict()}"
            )
    print("\n".join(lines), flush=True)
    if args.report:
        write_eval_report(dataset, kept, qrels, sources, args.report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(rows) + "\n")
        args.out.with_suffix(".choice.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
