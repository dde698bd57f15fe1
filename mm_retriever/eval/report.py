"""Evaluation reports: the results JSON, a Markdown table and PNG plots.

The JSON layout::

    {"dataset": ..., "scope": ..., "pipelines": {NAME: {"ndcg@5": x, "recall@5": x, "mrr@10": x,
     "by_source": {SOURCE: {"n": n, "ndcg@5": x, ...}}, "index_s_per_page": x,
     "query_ms_p50": x, "query_ms_p95": x, "bytes_per_page": x, ...}}}

Extra per-pipeline keys: ``kind`` ("ours" or "peer"), ``n_queries``, ``ocr_s_per_page`` (OCR
pipelines), ``pages``, ``config`` (what was run), ``note``, ``by_slice`` (like ``by_source``, for
the named query subsets of :mod:`mm_retriever.eval.slices`) and ``per_query`` (``{query_id:
{metric: x}}``, what the significance tests use). The document-level ``slices`` maps a slice name to
its query ids.

The Markdown report adds, per scope, nDCG@5 with a 95 % bootstrap interval for every pipeline and
a paired comparison of every pipeline with the reference pipeline (``hybrid`` by default): the
difference, its 95 % interval, the randomisation and t-test p-values and whether the difference
is significant, over all queries and over the ``filings`` slice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mm_retriever.eval.significance import PairedComparison, compare_to_reference, mean_ci
from mm_retriever.eval.slices import FILINGS

SOURCE_ORDER = ("chart", "table", "figure", "text", "layout")
REFERENCE = "hybrid"


def results_document(
    dataset: str,
    scope: str,
    pipelines: Mapping[str, Mapping[str, Any]],
    query_slices: Mapping[str, Sequence[str]] | None = None,
) -> dict:
    """The results JSON as a dict; ``query_slices`` (``{query_id: [slice, ...]}``) becomes the
    document's ``slices`` (``{slice: [query_id, ...]}``)."""
    slices: dict[str, list[str]] = {}
    for qid, names in sorted((query_slices or {}).items()):
        for name in names:
            slices.setdefault(name, []).append(qid)
    return {
        "dataset": dataset,
        "scope": scope,
        "pipelines": {name: dict(res) for name, res in pipelines.items()},
        "slices": dict(sorted(slices.items())),
    }


def write_json(doc: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _sources(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    found = {s for d in docs for p in d["pipelines"].values() for s in p.get("by_source", {})}
    return [s for s in SOURCE_ORDER if s in found] + sorted(found - set(SOURCE_ORDER))


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _label(name: str, res: Mapping[str, Any]) -> str:
    return f"{name} (peer)" if res.get("kind") == "peer" else name


def markdown_table(docs: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown section: quality (overall + nDCG@5 per evidence source) and cost, per scope."""
    sources = _sources(docs)
    lines: list[str] = []
    for doc in docs:
        lines += [f"### {doc['dataset']} — scope: {doc['scope']}", ""]
        head = ["pipeline", "nDCG@5", "R@5", "MRR@10"] + [f"{s} nDCG@5" for s in sources]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, res in doc["pipelines"].items():
            by = res.get("by_source", {})
            row = [
                _label(name, res),
                _fmt(res.get("ndcg@5")),
                _fmt(res.get("recall@5")),
                _fmt(res.get("mrr@10")),
            ] + [f"{_fmt(by[s]['ndcg@5'])} (n={by[s]['n']})" if s in by else "–" for s in sources]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if not any(_has_costs(res) for res in doc["pipelines"].values()):
            lines += slice_table(doc)
            lines += significance_table(doc)
            continue
        head = [
            "pipeline",
            "index s/page",
            "OCR s/page",
            "query ms p50",
            "query ms p95",
            "bytes/page",
        ]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, res in doc["pipelines"].items():
            row = [
                _label(name, res),
                _fmt(res.get("index_s_per_page"), 3),
                _fmt(res.get("ocr_s_per_page"), 3),
                _fmt(res.get("query_ms_p50"), 1),
                _fmt(res.get("query_ms_p95"), 1),
                _fmt(res.get("bytes_per_page"), 0) if res.get("bytes_per_page") else "–",
            ]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += slice_table(doc)
        lines += significance_table(doc)
    return "\n".join(lines)


_COSTS = ("index_s_per_page", "ocr_s_per_page", "query_ms_p50", "query_ms_p95", "bytes_per_page")


def _has_costs(res: Mapping[str, Any]) -> bool:
    return any(res.get(k) is not None for k in _COSTS)


def _per_query(doc: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    return {n: r["per_query"] for n, r in doc["pipelines"].items() if r.get("per_query")}


def slice_table(doc: Mapping[str, Any]) -> list[str]:
    """nDCG@5 per slice (filings first), one row a pipeline; empty when no slices."""
    names = sorted(doc.get("slices", {}), key=lambda s: (s != FILINGS, s))
    rows = [(n, r) for n, r in doc["pipelines"].items() if r.get("by_slice")]
    if not names or not rows:
        return []
    head = ["pipeline"] + [f"{s} nDCG@5" for s in names]
    lines = [
        f"nDCG@5 by slice ({doc['scope']}; `filings` = the 10-K/10-Q documents):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, res in rows:
        by = res["by_slice"]
        cells = [f"{_fmt(by[s]['ndcg@5'])} (n={by[s]['n']})" if s in by else "–" for s in names]
        lines.append("| " + " | ".join([_label(name, res), *cells]) + " |")
    return [*lines, ""]


def significance_table(
    doc: Mapping[str, Any], reference: str = REFERENCE, metric: str = "ndcg@5"
) -> list[str]:
    """Every pipeline against ``reference``: mean [95 % CI], difference [95 % CI], p-values,
    verdict; over all queries and the filings slice. Empty without per-query scores."""
    per_query = _per_query(doc)
    if reference not in per_query:
        return []
    groups: list[tuple[str, list[str] | None]] = [("all queries", None)]
    if doc.get("slices", {}).get(FILINGS):
        groups.append((FILINGS, list(doc["slices"][FILINGS])))
    lines: list[str] = []
    for label, qids in groups:
        qids = qids if qids is not None else sorted(per_query[reference])
        comparisons = compare_to_reference(per_query, reference, metric=metric, queries=qids)
        ref_vals = [per_query[reference].get(q, {}).get(metric, 0.0) for q in qids]
        head = ["pipeline", f"{metric} [95% CI]", f"Δ vs {reference} [95% CI]", "p (rand.)"]
        head += ["p (t-test)", "verdict"]
        lines += [
            f"Paired comparison with `{reference}` ({doc['scope']}, {label}, n={len(qids)}; "
            "randomisation test, 10,000 resamples; BCa bootstrap intervals; verdict at p < 0.05):",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            _sig_row(reference, ref_vals, None),
        ]
        for c in comparisons:
            vals = [per_query[c.pipeline].get(q, {}).get(metric, 0.0) for q in qids]
            lines.append(_sig_row(c.pipeline, vals, c))
        lines.append("")
    return lines


def _sig_row(name: str, values: Sequence[float], c: PairedComparison | None) -> str:
    lo, hi = mean_ci(values)
    mean = sum(values) / len(values) if values else 0.0
    cells = [name, f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"]
    if c is None:
        cells += ["(reference)", "–", "–", "–"]
    else:
        cells += [
            f"{c.diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
            f"{c.p_randomization:.3g}",
            f"{c.p_ttest:.3g}",
            c.verdict(),
        ]
    return "| " + " | ".join(cells) + " |"


def plot_by_source(doc: Mapping[str, Any], path: str | Path) -> Path:
    """Grouped bars: nDCG@5 per evidence type (and overall) for each pipeline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sources = _sources([doc])
    groups = ["all", *sources]
    names = list(doc["pipelines"])
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) + 0.25 * len(names)), 4.2))
    for i, name in enumerate(names):
        res = doc["pipelines"][name]
        vals = [res.get("ndcg@5", 0.0)] + [
            res.get("by_source", {}).get(s, {}).get("ndcg@5", 0.0) for s in sources
        ]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(
            xs,
            vals,
            width,
            label=_label(name, res),
            hatch="//" if res.get("kind") == "peer" else None,
        )
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("nDCG@5")
    ax.set_ylim(0, 1)
    ax.set_title(f"{doc['dataset']} — {doc['scope']}: nDCG@5 by evidence type")
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    docs: Sequence[Mapping[str, Any]], out_dir: str | Path, *, header: str = ""
) -> Path:
    """``report.md`` plus one ``ndcg5_by_source_<dataset>_<scope>.png`` a scope, in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [header.rstrip() + "\n"] if header else []
    parts.append(markdown_table(docs))
    for doc in docs:
        png = plot_by_source(
            doc, out_dir / f"ndcg5_by_source_{_slug(doc['dataset'])}_{doc['scope']}.png"
        )
        parts.append(f"![nDCG@5 by evidence type, {doc['scope']}]({png.name})\n")
    md = out_dir / "report.md"
    md.write_text("\n".join(parts), encoding="utf-8")
    return md


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
