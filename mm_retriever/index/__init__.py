"""The index: create/open (``lifecycle``), the write transaction (``writer``), legs (``legs``).

``from mm_retriever.index import MultimodalIndex`` is the entry point.
"""

from mm_retriever.index.legs import build_leg, build_legs
from mm_retriever.index.lifecycle import (
    IMAGES_DIR,
    IndexExistsError,
    IndexNotFoundError,
    MultimodalIndex,
    OptimizeReport,
    library_versions,
)
from mm_retriever.index.writer import IngestReport

__all__ = [
    "IMAGES_DIR",
    "IndexExistsError",
    "IndexNotFoundError",
    "IngestReport",
    "MultimodalIndex",
    "OptimizeReport",
    "build_leg",
    "build_legs",
    "library_versions",
]
