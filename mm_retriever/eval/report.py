"""Evaluation reports: the results JSON, a Markdown table and PNG plots.

The JSON layout::

    {"dataset": ..., "scope": ..., "pipelines": {NAME: {"ndcg@5": x, "recall@5": x, "mrr@10": x,
     "by_source": {SOURCE: {"n": n, "ndcg@5": x, ...}}, "index_s_per_page": x,
     "query_ms_p50": x, "query_ms_p95": x, "bytes_per_page": x, ...}}}

Extra per-pipeline keys: ``kind`` ("ours" or "peer"), ``n_queries``, ``ocr_s_per_page`` (OCR
pipelines), ``pages``, ``config`` (what was run), ``note``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SOURCE_ORDER = ("chart", "table", "figure", "text", "layout")


def results_document(dataset: str, scope: str, pipelines: Mapping[str, Mapping[str, Any]]) -> dict:
    """The results JSON as a dict (per-query rows dropped)."""
    return {
        "dataset": dataset,
        "scope": scope,
        "pipelines": {
            name: {k: v for k, v in res.items() if k != "per_query"}
            for name, res in pipelines.items()
        },
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
    return "\n".join(lines)


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
