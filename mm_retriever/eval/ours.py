"""Our pipelines: each a ``MultimodalIndex`` config plus retriever options (see ``pipelines``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mm_retriever.config import (
    DEFAULT_PAGE_MODEL,
    IndexConfig,
    IngestConfig,
    LegSpec,
    PluginSpec,
    default_legs,
)
from mm_retriever.errors import MMRetrieverError
from mm_retriever.eval.datasets import EvalDataset, EvalQuery, PageRef
from mm_retriever.eval.pipeline_base import (
    PIPELINES,
    BuildStats,
    Pipeline,
    PipelineUnavailable,
    Scope,
)

# Ingest settings added after indexes were first keyed; left out of the key while off, so
# indexes built before they existed are still found.
_NEW_INGEST_OFF = ("tables",)


def _key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------------------------------- ours


def _text_encoder(model: str | None) -> dict[str, Any] | None:
    return {"name": "sentence-transformers", "options": {"model": model}} if model else None


def _with_text_model(spec: LegSpec, text_model: str | None) -> LegSpec:
    """A copy of ``spec`` whose sentence-transformers encoders load ``text_model``."""
    spec = spec.model_copy(deep=True)
    if text_model:
        for key in ("encoder", "text_encoder"):
            enc = spec.options.get(key)
            if enc and enc.get("name") == "sentence-transformers":
                enc.setdefault("options", {})["model"] = text_model
    return spec


def _default_leg(name: str, text_model: str | None = None) -> LegSpec:
    return _with_text_model(next(s for s in default_legs() if s.name == name), text_model)


@dataclass
class OursPipeline(Pipeline):
    """A ``MultimodalIndex`` config plus the ``HybridRetriever`` options that query it."""

    name: str
    config: IndexConfig
    retriever: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    ocr_only: bool = False
    kind: Literal["ours", "peer"] = "ours"

    def __post_init__(self) -> None:
        self._index: Any = None
        self._retriever: Any = None
        self._doc_ids: dict[str, str] = {}  # file name -> doc_id
        self._names: dict[str, str] = {}  # doc_id -> file name
        self.index_path: Path | None = None

    def settings(self) -> dict[str, Any]:
        return {"index": self.config.model_dump(mode="json"), "retriever": self.retriever}

    def index_settings(self) -> dict[str, Any]:
        """What decides the index's content: the config less fusion and fusion weights (those
        apply at query time, so indexes are reused across fusion settings)."""
        data = self.config.model_dump(mode="json", exclude={"fusion"})
        for leg in data["legs"]:
            leg.pop("weight", None)
        for name in _NEW_INGEST_OFF:  # settings added later: absent when off, keys stay stable
            if not data["ingest"].get(name):
                data["ingest"].pop(name, None)
        return data

    def fusion(self, legs: Sequence[str]) -> Any:
        """The fusion this pipeline asks for (its config's fusion and leg weights)."""
        from mm_retriever import registry

        spec = self.config.fusion
        options = dict(spec.options)
        weights = {s.leg_name: s.weight for s in self.config.legs}
        weights.update(options.get("weights") or {})
        weights.update(self.retriever.get("weights") or {})
        options["weights"] = {n: w for n, w in weights.items() if n in legs}
        return registry.fusions.create(spec.name, **options)

    def ocr_engine(self) -> tuple[str, int, int, str] | None:
        if self.ocr_only:
            ingest = self.config.ingest
            return ingest.ocr_engine, ingest.ocr_dpi, ingest.ocr_max_side, ingest.ocr_runtime
        return None

    def covers(self, other: OursPipeline) -> bool:
        """True when this pipeline's index holds every leg ``other`` queries, built the same way."""
        mine = self.config
        theirs = other.config
        if mine.ingest != theirs.ingest or mine.device != theirs.device:
            return False
        need = other.retriever.get("legs") or [s.leg_name for s in theirs.legs]
        specs = {s.leg_name: s for s in mine.legs}
        their_specs = {s.leg_name: s for s in theirs.legs}
        return all(
            n in specs
            and n in their_specs
            and specs[n].model_dump(exclude={"weight"})
            == their_specs[n].model_dump(exclude={"weight"})
            for n in need
        )

    def use_index_of(self, other: OursPipeline) -> None:
        """Query ``other``'s index (a superset built the same way) instead of building one."""
        self.config = other.config.model_copy(deep=True)

    def index_dir(self, dataset: EvalDataset, workdir: Path) -> Path:
        key = _key(
            dataset.fingerprint(), sorted(f.name for f in dataset.files), self.index_settings()
        )
        return workdir / "indexes" / f"{_slug(dataset.name)}-{key}"

    def build(self, dataset: EvalDataset, workdir: Path, *, progress: bool = False) -> BuildStats:
        from mm_retriever.index import MultimodalIndex

        path = self.index_dir(dataset, workdir)
        self.index_path = path
        stats_file = path / "eval_build.json"
        for name, doc_id in dataset.document_ids.items():
            self._doc_ids[name] = doc_id
            self._names[doc_id] = name
        if stats_file.exists():  # built before for the same files and settings: reuse
            saved = json.loads(stats_file.read_text())
            index = MultimodalIndex.open(path)
            stored = {d["doc_id"] for d in index.documents()}
            if set(self._doc_ids.values()) - set(saved["failed_ids"]) <= stored:
                self._ready(index)
                return BuildStats.from_json(saved["stats"])
        try:
            index = MultimodalIndex.create(path, self.config, overwrite=True)
        except MMRetrieverError as exc:
            raise PipelineUnavailable(str(exc)) from exc
        t0 = time.perf_counter()
        report = index.add(dataset.files, progress=progress)
        seconds = time.perf_counter() - t0
        pages = index.num_pages()
        total = sum(index.bytes_per_table().values()) if index.path is not None else None
        stats = BuildStats(
            pages=pages,
            seconds=seconds,
            bytes=total,
            timings=dict(report.timings),
            failed=dict(report.failed),
        )
        failed_ids = [
            self._doc_ids[Path(p).name] for p in report.failed if Path(p).name in self._doc_ids
        ]
        stats_file.write_text(
            json.dumps({"stats": stats.to_json(), "failed_ids": failed_ids}, indent=2)
        )
        self._ready(index)
        return stats

    def _ready(self, index: Any) -> None:
        legs = self.retriever.get("legs")
        missing = [n for n in (legs or []) if n not in index.legs]
        if missing:
            why = "; ".join(index.skipped_legs.get(n, "not in the index") for n in missing)
            raise PipelineUnavailable(f"leg(s) {missing} unavailable: {why}")
        options = {k: v for k, v in self.retriever.items() if v is not None}
        if "fusion" not in options:  # the index may have been built with other fusion settings
            options.pop("weights", None)
            options["fusion"] = self.fusion(legs or list(index.legs))
        self._index = index
        self._retriever = index.retriever(include_images=False, write_images=False, **options)

    @property
    def legs_used(self) -> list[str]:
        return list(self._retriever.leg_names) if self._retriever is not None else []

    def search(self, query: EvalQuery, k: int, scope: Scope) -> list[PageRef]:
        filters = None
        if scope == "within-doc":
            if query.doc not in self._doc_ids:
                raise MMRetrieverError(f"query {query.query_id}: unknown document {query.doc!r}")
            filters = {"doc_id": self._doc_ids[query.doc]}
        pages = self._retriever.retrieve(query.text, k=k, filters=filters)
        return [(self._names.get(p.doc_id, p.doc_id), p.page_index) for p in pages]

    def close(self) -> None:
        self._retriever = None
        self._index = None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip("/"))[-60:]


#: reference pipelines search with the question as written (no answer-instruction removal, no
#: financial-term expansion), like the data set's reference figures
RAW_QUERY = {"clean_query": False, "expand_query": False}


def make_ours(
    name: str,
    *,
    ocr_engine: str | None = None,
    text_model: str | None = None,
    page_model: str | None = None,
    device: str = "auto",
    hybrid_config: IndexConfig | None = None,
    retriever: Mapping[str, Any] | None = None,
) -> OursPipeline:
    """One of ``OURS`` with the library defaults (what a user gets), optionally overridden.

    ``hybrid_config`` / ``retriever`` apply to ``hybrid`` (and the single-leg ``text``/``bm25``,
    which query the same index); ``ocr_engine`` applies to the OCR steps of every pipeline.
    """
    base = hybrid_config.model_copy(deep=True) if hybrid_config else IndexConfig(device=device)
    if text_model:
        base.legs = [_with_text_model(s, text_model) for s in base.legs]
    if page_model:
        for spec in base.legs:
            enc = spec.options.get("encoder")
            if spec.name == "page" and enc:
                enc.setdefault("options", {})["model"] = page_model
    if ocr_engine:
        base.ingest = base.ingest.model_copy(update={"ocr_engine": ocr_engine})
    engine = base.ingest.ocr_engine
    opts = dict(retriever or {})
    if name == "hybrid":
        return OursPipeline("hybrid", base, opts, "every available leg of the default index, fused")
    if name in ("text", "bm25", "page"):
        legs = [s for s in base.legs if s.leg_name == name] or [_default_leg(name, text_model)]
        cfg = base.model_copy(update={"legs": legs})
        desc = {
            "text": "dense text leg alone (default ingest)",
            "bm25": "BM25 leg alone (default ingest)",
            "page": f"page-image leg alone ({page_model or DEFAULT_PAGE_MODEL})",
        }[name]
        return OursPipeline(name, cfg, {"legs": [name]}, desc)
    if name == "layer-bm25":
        ingest = IngestConfig(ocr="never", figures=False)
        cfg = IndexConfig(ingest=ingest, legs=[LegSpec(name="bm25")], device=device)
        return OursPipeline(
            name, cfg, {"legs": ["bm25"], **RAW_QUERY}, "BM25 over the PDF text layer only"
        )
    if name in ("ocr-bm25", "ocr-dense"):
        ingest = IngestConfig(ocr="always", page_text="ocr", ocr_engine=engine, figures=False)
        leg = LegSpec(name="bm25") if name == "ocr-bm25" else _default_leg("text", text_model)
        if name == "ocr-dense":
            leg = next((s for s in base.legs if s.name == "text"), leg)
        cfg = IndexConfig(
            ingest=ingest,
            legs=[leg],
            fusion=PluginSpec(name="rrf"),
            device=device,
        )
        what = "BM25" if name == "ocr-bm25" else "dense text"
        return OursPipeline(
            name,
            cfg,
            {"legs": [leg.leg_name], **RAW_QUERY},
            f"{what} over {engine} OCR of every rendered page (no text layer)",
            ocr_only=True,
        )
    raise MMRetrieverError(f"unknown pipeline '{name}'; known: {', '.join(PIPELINES)}")
