"""The filing prior (``ranking.filing_prior``) on cached leg rankings, with paired tests.

Reads a leg-ranking cache written by ``benchmarks/tune_fusion.py --cache`` (every leg's top pages
per query and scope, and the document prior's scores), computes the filing fields and page
sections of every document from the index's stored page text (read only; nothing is written to
the index), then scores the library's ranking - default fusion, the document prior, then
``FilingPrior`` with each setting of a small grid - exactly as ``HybridRetriever.retrieve``
does it (reference pinning aside), without re-running the legs. Each setting is compared with
the default by a paired randomisation test per scope (and per dev half).

    uv run --frozen python benchmarks/filings/tune_filing_prior.py \\
        --dataset ../shared/data/financebench-dev --cache /work/scratch/fb-legs.pkl \\
        --index /work/evalwork/indexes/financebench-dev-XXXX --out results.tsv
"""

from __future__ import annotations

import argparse
import itertools
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_fusion import SCOPES, _Names, _prior, dev_half, restrict

from mm_retriever.config import DEFAULT_LEG_WEIGHTS
from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.metrics import evaluate_rankings
from mm_retriever.eval.significance import paired_test
from mm_retriever.eval.slices import query_slices
from mm_retriever.index.filing_fields import filing_rows
from mm_retriever.ingest.filing import FilingFields
from mm_retriever.query.filing_question import read_question
from mm_retriever.query.query_expansion import expand_query
from mm_retriever.query.query_text import retrieval_text
from mm_retriever.ranking.filing_prior import FilingIndex, FilingPrior, rerank
from mm_retriever.ranking.fusion import WeightedFusion
from mm_retriever.ranking.hybrid import DEFAULT_DOCUMENT_PRIOR


def fields_from_texts(texts: dict[str, list[str]]) -> tuple[FilingIndex, float]:
    """The filing index of documents given as page texts, and the seconds a page it took."""
    t0 = time.perf_counter()
    filings: dict[str, FilingFields] = {}
    sections: dict[str, dict[int, tuple[str, str]]] = {}
    for doc_id, pages in texts.items():
        f_rows, s_rows = filing_rows(doc_id, pages)
        for r in f_rows:
            r = dict(r)
            r.pop("doc_id")
            filings[doc_id] = FilingFields(**r)
        sections[doc_id] = {r["page_index"]: (r["section"], r["title"]) for r in s_rows}
    n = sum(len(p) for p in texts.values())
    return FilingIndex(filings, sections), (time.perf_counter() - t0) / max(1, n)


def index_texts(path: Path) -> dict[str, list[str]]:
    """doc_id -> page texts of an existing index (read only)."""
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.store import PAGES

    store = MultimodalIndex.open(path).store
    rows = store.query(PAGES, None, ["doc_id", "page_index", "text"]).to_pylist()
    out: dict[str, dict[int, str]] = {}
    for r in rows:
        out.setdefault(r["doc_id"], {})[int(r["page_index"])] = r["text"] or ""
    return {d: [p[i] for i in sorted(p)] for d, p in out.items()}


def rankings(dataset, names, cached, fi, setting, legs=None) -> dict[str, dict[str, list]]:
    """{scope: {qid: [(file name, page), ...]}}: default fusion of ``legs`` (default all),
    document prior, filing prior ``setting`` (weight, section weight, top documents)."""
    weight, section_weight, top_docs = setting
    prior = FilingPrior(weight, section_weight, top_documents=top_docs)
    if legs is None:
        legs = sorted({leg for per in cached["legs"]["corpus"].values() for leg in per})
    fusion = WeightedFusion({leg: DEFAULT_LEG_WEIGHTS.get(leg, 1.0) for leg in legs}, "zscore")
    out: dict[str, dict[str, list]] = {}
    for scope in SCOPES:
        out[scope] = {}
        for q in dataset.queries:
            per_leg = cached["legs"][scope][q.query_id]
            fused = fusion.fuse({leg: per_leg[leg] for leg in legs if leg in per_leg}, 1000)
            fused = _prior(fused, cached, q.query_id, (DEFAULT_DOCUMENT_PRIOR, 3))
            if weight or section_weight:
                text = expand_query(retrieval_text(q.text))
                fused = rerank(fused, fi, text, read_question(text), prior)
            out[scope][q.query_id] = [(names._names[h.doc_id], h.page_index) for h in fused]
    return out


GRID = [(0.0, 0.0, 0)] + [
    (w, s, t)
    for w, s, t in itertools.product(
        (0.0, 0.5, 1.0, 2.0, 3.0), (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0), (0, 2)
    )
    if (w, s) != (0.0, 0.0) and not (s == 0.0 and t)
]


def single_legs(dataset, names, cached, fi, check, qrels, sources) -> list[str]:
    """The hybrid with setting ``check`` against each leg alone with the same question
    handling and priors (what ``eval -p bm25`` runs), paired, per scope and per type."""
    legs = sorted({leg for per in cached["legs"]["corpus"].values() for leg in per})
    setting = (check[0], check[1], int(check[2]))
    hybrid = rankings(dataset, names, cached, fi, setting)
    out = []
    for leg in legs:
        for prior in ((0.0, 0.0, 0), setting):
            alone = rankings(dataset, names, cached, fi, prior, legs=[leg])
            for scope in SCOPES:
                a = evaluate_rankings(hybrid[scope], qrels, sources)
                b = evaluate_rankings(alone[scope], qrels, sources)
                qids = sorted(a["per_query"])
                c = paired_test(
                    [a["per_query"][q]["ndcg@5"] for q in qids],
                    [b["per_query"][q]["ndcg@5"] for q in qids],
                    pipeline="hybrid",
                )
                out.append(
                    f"hybrid {setting} vs {leg} alone (filing prior {prior}) | {scope}: "
                    f"{c.mean:.3f} vs {c.reference_mean:.3f}, diff {c.diff:+.3f} "
                    f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}], p {c.p_randomization:.3g}"
                )
                for src in sorted(a["by_source"]):
                    qs = [q for q in qids if src in sources[q]]
                    if len(qs) < 2:
                        continue
                    t = paired_test(
                        [a["per_query"][q]["ndcg@5"] for q in qs],
                        [b["per_query"][q]["ndcg@5"] for q in qs],
                        pipeline="hybrid",
                    )
                    out.append(
                        f"    {src} (n={t.n}): {t.mean:.3f} vs {t.reference_mean:.3f}, "
                        f"p {t.p_randomization:.3g}"
                    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache", type=Path, required=True, help="tune_fusion.py leg cache")
    ap.add_argument("--index", type=Path, help="index whose page text gives the fields")
    ap.add_argument("--texts", type=Path, help="or: JSON doc_id -> page texts")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--check", default="3,5,2", help="setting with paired tests per type")
    ap.add_argument("--only-check", action="store_true", help="skip the grid")
    args = ap.parse_args()
    import json

    cached = pickle.loads(args.cache.read_bytes())
    dataset = restrict(load_dataset(args.dataset), set(cached["view"]["doc_ids"]))
    names = _Names(cached["view"]["doc_ids"])
    if args.index is not None:
        texts = index_texts(args.index)
    else:
        texts = json.loads(args.texts.read_text())
    fi, s_page = fields_from_texts(texts)
    print(
        f"{len(dataset.queries)} queries; fields of {len(texts)} documents "
        f"({sum(len(p) for p in texts.values())} pages) in {s_page * 1000:.3f} ms a page; "
        f"filings {len(fi.filings)}",
        flush=True,
    )
    qrels = {q.query_id: dataset.qrels[q.query_id] for q in dataset.queries}
    sources = {q.query_id: q.sources for q in dataset.queries}
    half = {q.query_id: dev_half(q.doc or "") for q in dataset.queries}
    slices = query_slices(dataset.queries)
    base = rankings(dataset, names, cached, fi, GRID[0])
    base_res = {s: evaluate_rankings(base[s], qrels, sources) for s in SCOPES}
    head = "setting\twithin nDCG@5\tdiff\tp\tcorpus nDCG@5\tdiff\tp"
    rows = [head + "\tA within\tB within\tA corpus\tB corpus"]
    check = tuple(float(x) for x in args.check.split(","))
    check_setting = (check[0], check[1], int(check[2]))
    lines = []
    grid = [GRID[0], check_setting] if args.only_check else GRID
    for setting in grid:
        ranked = rankings(dataset, names, cached, fi, setting)
        cells = [f"w={setting[0]} sec={setting[1]} top={setting[2]}"]
        halves = []
        for scope in SCOPES:
            res = evaluate_rankings(ranked[scope], qrels, sources)
            a, b = res["per_query"], base_res[scope]["per_query"]
            qids = sorted(a)
            c = paired_test(
                [a[q]["ndcg@5"] for q in qids], [b[q]["ndcg@5"] for q in qids], pipeline="x"
            )
            cells += [f"{c.mean:.3f}", f"{c.diff:+.3f}", f"{c.p_randomization:.3f}"]
            for h in ("A", "B"):
                sub = [q for q in qids if half[q] == h]
                halves.append(sum(a[q]["ndcg@5"] for q in sub) / max(1, len(sub)))
            if setting[:2] == check[:2] and setting[2] == int(check[2]):
                lines.append(
                    f"{cells[0]} | {scope} (n={c.n}): {c.mean:.3f} vs default "
                    f"{c.reference_mean:.3f}, diff {c.diff:+.3f} [95% CI {c.ci_low:+.3f}, "
                    f"{c.ci_high:+.3f}], p(rand) {c.p_randomization:.3g}: {c.verdict()}"
                )
                fil = [q for q in qids if slices.get(q) and "filings" in slices[q]]
                if fil and len(fil) < len(qids):
                    lines.append(
                        f"    filings slice (n={len(fil)}): "
                        f"{sum(a[q]['ndcg@5'] for q in fil) / len(fil):.3f} vs "
                        f"{sum(b[q]['ndcg@5'] for q in fil) / len(fil):.3f}"
                    )
                for src, v in sorted(res["by_source"].items()):
                    ref = base_res[scope]["by_source"][src]
                    lines.append(
                        f"    {src} (n={v['n']}): {v['ndcg@5']:.3f} vs {ref['ndcg@5']:.3f}"
                    )
        cells += [f"{x:.3f}" for x in halves]
        rows.append("\t".join(cells))
        print(rows[-1], flush=True)
    lines += single_legs(dataset, names, cached, fi, check, qrels, sources)
    print("\n".join(lines), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(rows) + "\n")
        args.out.with_suffix(".check.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
