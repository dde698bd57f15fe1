"""Fixtures for the integration packages' tests: a real, tiny mm-retriever index.

Two generated PDFs (tests/pdfgen.py): a five-page mixed report (text, table, raster chart,
vector chart, scanned page) and a four-page report with one unique fact a page. Legs: the text
leg with the real all-MiniLM-L6-v2, BM25, and the figure leg on figure text (no image model).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # pdfgen.py (test documents), shared_fixtures.py, tiny_models.py

import pdfgen  # noqa: E402
from shared_fixtures import (  # noqa: E402, F401  (offline env too)
    _few_threads,
    minilm_path_fixture,
    text_index_config,
)

FACTS = [
    "The Brindlewick canal opened to barge traffic in 1887 after nine years of digging.",
    "Average rent in Oskarvale rose to 1,430 crowns a month in 2024.",
    "The Velmora orchard harvested 312 tonnes of quinces last autumn.",
    "Falconridge school counts 947 pupils and 61 teachers.",
]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pdfgen.MixedPDF]:
    folder = tmp_path_factory.mktemp("pdfs")
    mixed = pdfgen.make_mixed_pdf(folder / "mixed.pdf")
    pdfgen.make_sample_pdf(folder / "facts.pdf", FACTS, title="Town facts")
    return folder, mixed


@pytest.fixture(scope="session")
def pdf_folder(corpus) -> Path:
    return corpus[0]


@pytest.fixture(scope="session")
def mixed(corpus) -> pdfgen.MixedPDF:
    """What the mixed PDF holds where (facts, figure boxes and captions)."""
    return corpus[1]


@pytest.fixture(scope="session")
def mm_index(pdf_folder: Path, tmp_path_factory: pytest.TempPathFactory, minilm_path: str):
    """A MultimodalIndex on disk over the two generated PDFs."""
    from mm_retriever.index import MultimodalIndex

    index = MultimodalIndex.create(
        tmp_path_factory.mktemp("index") / "idx", text_index_config(minilm_path)
    )
    report = index.add([pdf_folder])
    assert not report.failed, report.failed
    assert len(report.added) == 2
    return index


@pytest.fixture(scope="session")
def hybrid(mm_index):
    return mm_index.retriever()


@pytest.fixture(scope="session")
def doc_ids(pdf_folder: Path) -> dict[str, str]:
    from mm_retriever.ingest import document_id

    return {p.name: document_id(p) for p in pdf_folder.glob("*.pdf")}


@pytest.fixture(scope="session")
def meta_index(tmp_path_factory: pytest.TempPathFactory, minilm_path: str):
    """An index of six small PDFs with user metadata (tests/metadata_corpus.py); returns the
    index and each doc_id's metadata."""
    from metadata_corpus import make_metadata_corpus

    from mm_retriever.index import MultimodalIndex

    root = tmp_path_factory.mktemp("metadata")
    corpus = make_metadata_corpus(root / "docs")
    index = MultimodalIndex.create(root / "index", text_index_config(minilm_path))
    report = index.add([p for p, _ in corpus], metadata={str(p): m for p, m in corpus})
    assert report.ok, report.failed
    return index, {report.doc_ids[str(p)]: m for p, m in corpus}
