"""Paired comparison of two ``mm-retriever eval --json`` runs on the same queries, per pipeline.

    uv run --frozen python benchmarks/filings/compare_evals.py DATASET BASE.within-doc.json \
        NEW.within-doc.json

Prints, for each pipeline in both files, nDCG@5 of each run, the difference with its 95 % BCa
interval and the paired randomisation p-value, overall, per evidence source and on the
``filings`` slice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mm_retriever.eval.datasets import load_dataset
from mm_retriever.eval.significance import paired_test
from mm_retriever.eval.slices import query_slices


def main() -> None:
    dataset = load_dataset(sys.argv[1])
    base, new = (json.loads(Path(p).read_text()) for p in sys.argv[2:4])
    sources = {q.query_id: q.sources for q in dataset.queries}
    slices = query_slices(dataset.queries)
    for name, pipe in new["pipelines"].items():
        ref = base["pipelines"].get(name)
        if ref is None:
            continue
        a, b = pipe["per_query"], ref["per_query"]
        qids = sorted(set(a) & set(b))
        groups = {"all": qids}
        for q in qids:
            for src in sources.get(q, []):
                groups.setdefault(src, []).append(q)
        filings = [q for q in qids if "filings" in (slices.get(q) or [])]
        if filings:
            groups["filings slice"] = filings
        for label, qs in groups.items():
            c = paired_test(
                [a[q]["ndcg@5"] for q in qs], [b[q]["ndcg@5"] for q in qs], pipeline=name
            )
            print(
                f"{new['scope']} {name} {label} (n={c.n}): {c.mean:.3f} vs {c.reference_mean:.3f}, "
                f"diff {c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}], p {c.p_randomization:.3g}"
            )


if __name__ == "__main__":
    main()
