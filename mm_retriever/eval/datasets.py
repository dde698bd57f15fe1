"""Evaluation data sets: documents, queries and page-level relevance judgements.

Three sources, one shape (:class:`EvalDataset`):

- a local folder (``pdfs/``, ``queries.jsonl``, ``qrels.tsv``; see ``load_local``);
- ViDoRe v1 (``vidore:NAME``): BEIR-style sets with ``corpus``/``queries``/``qrels`` subsets, or
  the original QA-style sets (one row a query with its page image);
- DocVQA in its retrieval formulation (``docvqa:NAME``): every distinct page image is a document,
  a question's relevant page is the page it was asked about.

Hugging Face sets load with ``datasets`` from a ``save_to_disk`` folder or the local cache; offline
and uncached, :class:`DatasetUnavailableError` says how to fetch them. Their page images are written
once as PNG files (one-page documents) under the cache so every pipeline indexes the same files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mm_retriever.errors import MMRetrieverError
from mm_retriever.ingest.files import document_id

PageRef = tuple[str, int]  # (document file name, 0-based page index)

EVIDENCE_SHORT = {
    "Chart": "chart",
    "Table": "table",
    "Figure": "figure",
    "Pure-text (Plain-text)": "text",
    "Generalized-text (Layout)": "layout",
}


class DatasetError(MMRetrieverError, ValueError):
    """An evaluation data set is malformed or cannot be read."""


class DatasetUnavailableError(MMRetrieverError):
    """A Hugging Face data set is neither local nor cached, and the Hub cannot be reached."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        msg = (
            f"data set '{name}' is not available offline: not a local folder and not in the "
            "Hugging Face datasets cache. Fix: on a machine with internet run "
            f"`python -c \"import datasets; datasets.load_dataset('{name}')\"` (BEIR-style "
            "sets: also with 'corpus', 'queries' and 'qrels' as the config name), then copy "
            "~/.cache/huggingface (or set HF_HOME), or `save_to_disk` it and pass the folder"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


@dataclass
class EvalQuery:
    """One question. ``doc`` names the document it is about (needed for within-doc scoring)."""

    query_id: str
    text: str
    doc: str | None = None
    sources: list[str] = field(default_factory=list)
    doc_type: str | None = None


@dataclass
class EvalDataset:
    """Documents (files), queries and qrels keyed by ``(file name, page_index)``."""

    name: str
    files: list[Path]
    queries: list[EvalQuery]
    qrels: dict[str, dict[PageRef, int]]

    @property
    def has_docs(self) -> bool:
        """True when every query names its document (within-doc scope is possible)."""
        return bool(self.queries) and all(q.doc for q in self.queries)

    @property
    def num_relevant(self) -> int:
        return sum(sum(1 for r in rels.values() if r > 0) for rels in self.qrels.values())

    @cached_property
    def document_ids(self) -> dict[str, str]:
        """File name -> document id (content hash), computed once per data set."""
        return {f.name: document_id(f) for f in self.files}

    def fingerprint(self) -> str:
        """Content hash of the document files (names and bytes; copies and touched files match)."""
        h = hashlib.sha256()
        for name, doc_id in sorted(self.document_ids.items()):
            h.update(f"{name}\t{doc_id}\n".encode())
        return h.hexdigest()[:16]

    def limit(self, n_queries: int | None = None, n_docs: int | None = None) -> EvalDataset:
        """A smaller set: the first ``n_docs`` documents (by name) and up to ``n_queries`` queries
        whose relevant pages all lie in the kept documents."""
        files = sorted(self.files, key=lambda p: p.name)[: n_docs or None]
        names = {f.name for f in files}
        queries = [
            q
            for q in self.queries
            if all(doc in names for doc, _ in self.qrels.get(q.query_id, {}))
            and (q.doc is None or q.doc in names)
        ][: n_queries or None]
        keep = {q.query_id for q in queries}
        qrels = {qid: rels for qid, rels in self.qrels.items() if qid in keep}
        return EvalDataset(self.name, files, queries, qrels)


def load_dataset(source: str | Path, *, split: str | None = None) -> EvalDataset:
    """Load ``source``: a local folder, ``vidore:NAME`` or ``docvqa:NAME`` (NAME: hub id or a
    ``save_to_disk`` folder)."""
    text = str(source)
    kind, _, name = text.partition(":")
    if kind in ("vidore", "docvqa") and name:
        return (
            load_vidore(name, split=split) if kind == "vidore" else load_docvqa(name, split=split)
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return load_local(path)
    raise DatasetError(
        f"unknown data set '{text}': give a folder with pdfs/, queries.jsonl and qrels.tsv, "
        "or vidore:NAME, or docvqa:NAME"
    )


# ---------------------------------------------------------------- local folder format


def load_local(root: str | Path) -> EvalDataset:
    """Read the folder format: ``pdfs/`` (file name = doc id), ``queries.jsonl``, ``qrels.tsv``."""
    root = Path(root)
    docs_dir = root / "pdfs"
    for need in (docs_dir, root / "queries.jsonl", root / "qrels.tsv"):
        if not need.exists():
            raise DatasetError(
                f"{root}: missing {need.name} (need pdfs/, queries.jsonl, qrels.tsv)"
            )
    files = sorted(
        p
        for p in docs_dir.iterdir()
        if p.is_file() and p.suffix.lower() in {".pdf", ".png", ".jpg", ".jpeg"}
    )
    if not files:
        raise DatasetError(f"{docs_dir}: no PDF or image files")
    queries: list[EvalQuery] = []
    with open(root / "queries.jsonl", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                queries.append(
                    EvalQuery(
                        query_id=str(row["query_id"]),
                        text=str(row["query"]),
                        doc=row.get("doc_id"),
                        sources=[
                            EVIDENCE_SHORT.get(s, _slug(s)) for s in row.get("evidence_sources", [])
                        ],
                        doc_type=row.get("doc_type"),
                    )
                )
            except (json.JSONDecodeError, KeyError) as exc:
                raise DatasetError(f"{root / 'queries.jsonl'}:{n}: bad query line ({exc})") from exc
    qrels: dict[str, dict[PageRef, int]] = {}
    with open(root / "qrels.tsv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {"query_id", "doc_id", "page", "relevance"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{root / 'qrels.tsv'}: missing columns {sorted(missing)}")
        for row in reader:
            rel = int(row["relevance"])
            qrels.setdefault(row["query_id"], {})[(row["doc_id"], int(row["page"]))] = rel
    names = {f.name for f in files}
    unknown = {doc for rels in qrels.values() for doc, _ in rels} - names
    if unknown:
        raise DatasetError(f"{root}: qrels name documents not in pdfs/: {sorted(unknown)[:3]}")
    queries = [q for q in queries if q.query_id in qrels]
    return EvalDataset(root.name, files, queries, qrels)


# ---------------------------------------------------------------- Hugging Face sets


def load_vidore(name: str, *, split: str | None = None) -> EvalDataset:
    """A ViDoRe v1 set: BEIR-style (``corpus``/``queries``/``qrels``) or QA-style."""
    parts = _load_hf(name, split=split)
    if isinstance(parts, dict) and {"corpus", "queries", "qrels"} <= set(parts):
        return _from_beir(name, parts["corpus"], parts["queries"], parts["qrels"])
    table = parts["rows"] if isinstance(parts, dict) else parts
    return _from_qa(name, table, query_col="query", id_cols=("image_filename",))


def load_docvqa(name: str, *, split: str | None = None) -> EvalDataset:
    """DocVQA as retrieval: every distinct page image is a document; a question's page is
    its relevant page."""
    parts = _load_hf(name, split=split or "validation", beir=False)
    table = parts["rows"] if isinstance(parts, dict) else parts
    return _from_qa(
        name,
        table,
        query_col="question",
        id_cols=("image_filename", "docId", "ucsf_document_id+ucsf_document_page_no"),
    )


def _load_hf(name: str, *, split: str | None, beir: bool = True) -> Any:
    """``{"corpus", "queries", "qrels"}`` or ``{"rows"}`` from a saved folder or the cache."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a core dependency
        from mm_retriever.errors import MissingExtraError

        raise MissingExtraError("datasets", purpose="Hugging Face evaluation sets") from exc
    path = Path(name).expanduser()
    if path.exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:
            raise DatasetError(f"{path}: not a `save_to_disk` folder ({exc})") from exc
        if isinstance(loaded, datasets.DatasetDict):
            if beir and {"corpus", "queries", "qrels"} <= set(loaded):
                return {k: loaded[k] for k in ("corpus", "queries", "qrels")}
            key = split if split in loaded else next(iter(loaded))
            return {"rows": loaded[key]}
        return {"rows": loaded}
    try:
        if beir:
            try:
                configs = datasets.get_dataset_config_names(name)
            except Exception:
                configs = []
            if {"corpus", "queries", "qrels"} <= set(configs):
                return {
                    c: datasets.load_dataset(name, c, split=split or "test")
                    for c in ("corpus", "queries", "qrels")
                }
        return {"rows": datasets.load_dataset(name, split=split or "test")}
    except Exception as exc:
        raise DatasetUnavailableError(name, f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def _images_dir(name: str) -> Path:
    cache = Path(os.environ.get("MM_RETRIEVER_CACHE", Path.home() / ".cache" / "mm-retriever"))
    return cache / "eval-images" / _slug(name)


def _save_image(image: Any, path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        image.convert("RGB").save(tmp, format="PNG")
        tmp.replace(path)
    return path


def _from_beir(name: str, corpus: Any, queries: Any, qrels: Any) -> EvalDataset:
    out_dir = _images_dir(name)
    files: list[Path] = []
    doc_of: dict[str, str] = {}
    for row in corpus:
        cid = str(row["corpus-id"])
        path = _save_image(row["image"], out_dir / f"{_slug(cid)}.png")
        files.append(path)
        doc_of[cid] = path.name
    rels: dict[str, dict[PageRef, int]] = {}
    for row in qrels:
        score = int(row.get("score", 1))
        if score > 0:
            cid = str(row["corpus-id"])
            if cid not in doc_of:
                raise DatasetError(f"{name}: qrels name corpus-id {cid} not in the corpus")
            rels.setdefault(str(row["query-id"]), {})[(doc_of[cid], 0)] = score
    qs = [
        EvalQuery(str(row["query-id"]), str(row["query"]))
        for row in queries
        if str(row["query-id"]) in rels and row.get("query")
    ]
    return EvalDataset(name, files, qs, {q.query_id: rels[q.query_id] for q in qs})


def _from_qa(name: str, table: Any, *, query_col: str, id_cols: Iterable[str]) -> EvalDataset:
    columns = set(table.column_names)
    if "image" not in columns:
        raise DatasetError(f"{name}: no 'image' column (columns: {sorted(columns)})")
    qcol = query_col if query_col in columns else ("query" if "query" in columns else None)
    if qcol is None:
        raise DatasetError(f"{name}: no '{query_col}' column (columns: {sorted(columns)})")
    idcol = next((c for c in id_cols if all(p in columns for p in c.split("+"))), None)
    out_dir = _images_dir(name)
    files: dict[str, Path] = {}
    queries: list[EvalQuery] = []
    qrels: dict[str, dict[PageRef, int]] = {}
    for i, row in enumerate(table):
        if idcol:
            page_id = "_".join(str(row[p]) for p in idcol.split("+"))
        else:  # no id column: identical images are one page
            page_id = hashlib.sha256(row["image"].tobytes()).hexdigest()[:16]
        if page_id not in files:
            files[page_id] = _save_image(row["image"], out_dir / f"{_slug(page_id)}.png")
        text = row.get(qcol)
        if text:
            qid = str(row.get("questionId", row.get("query_id", i)))
            queries.append(EvalQuery(qid, str(text)))
            qrels.setdefault(qid, {})[(files[page_id].name, 0)] = 1
    return EvalDataset(name, sorted(files.values()), queries, qrels)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_").lower() or "x"
