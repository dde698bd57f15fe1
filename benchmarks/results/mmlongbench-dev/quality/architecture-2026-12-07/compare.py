"""Per-query nDCG@5 of two eval runs (before/after), per scope and pipeline.

Usage: python compare.py BEFORE_PREFIX AFTER_PREFIX  (e.g. /work/baseline/mmlb ./after), reading
PREFIX.<scope>.json as `mm-retriever eval --json PREFIX.json` writes it for several scopes.
Prints, per scope and pipeline: queries compared, queries whose nDCG@5 differs, the largest
difference and the two means. Exit 1 when any query differs.
"""

import json
import sys
from pathlib import Path


def load(prefix: str, scope: str) -> dict:
    path = Path(f"{prefix}.{scope}.json")
    return json.loads(path.read_text())["pipelines"]


def main(before: str, after: str) -> int:
    differ = 0
    for scope in ("within-doc", "corpus"):
        a, b = load(before, scope), load(after, scope)
        for name in sorted(set(a) | set(b)):
            if name not in a or name not in b:
                print(f"{scope:10} {name:8} only in {'before' if name in a else 'after'}")
                differ += 1
                continue
            qa, qb = a[name]["per_query"], b[name]["per_query"]
            ids = sorted(set(qa) | set(qb))
            diffs = [
                abs(qa.get(i, {}).get("ndcg@5", -1) - qb.get(i, {}).get("ndcg@5", -1)) for i in ids
            ]
            changed = sum(d > 1e-9 for d in diffs)
            differ += changed
            print(
                f"{scope:10} {name:8} queries {len(ids)}  differing {changed}  "
                f"max |diff| {max(diffs):.2e}  nDCG@5 before {a[name]['ndcg@5']:.4f} "
                f"after {b[name]['ndcg@5']:.4f}"
            )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
