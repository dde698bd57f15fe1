"""What every scored pipeline is: ``Pipeline`` (build an index of a data set, answer page-level),
its build costs (``BuildStats``) and ``PipelineUnavailable``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
