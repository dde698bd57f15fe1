"""LanceDB storage: the index's tables and the helpers that turn rows into Arrow."""

from mm_retriever.store.lancedb_store import LanceDBStore, is_local_uri, local_path
from mm_retriever.store.schema import (
    DOCUMENTS,
    FIGURES,
    MANIFEST,
    PAGES,
    SCHEMA_VERSION,
    SOURCES,
    leg_table,
)

__all__ = [
    "DOCUMENTS",
    "FIGURES",
    "MANIFEST",
    "PAGES",
    "SCHEMA_VERSION",
    "SOURCES",
    "LanceDBStore",
    "is_local_uri",
    "leg_table",
    "local_path",
]
