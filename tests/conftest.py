"""Shared fixtures: offline settings, the real bundled MiniLM, the dev data set if present."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_fixtures import _few_threads, minilm_path_fixture  # noqa: F401  (offline env too)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlongbench-dev"


@pytest.fixture(scope="session")
def dev_set() -> Path:
    """The mmlongbench-dev folder from ../shared/data (skipped with a reason where absent)."""
    if not (SHARED_DATA / "pdfs").is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA
