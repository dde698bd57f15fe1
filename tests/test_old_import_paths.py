"""Modules moved in the layered layout still import under their old paths, as the same modules.

The names listed are each old module's public names before the move.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

OLD_PATHS = {
    "mm_retriever.hybrid": (
        "mm_retriever.ranking.hybrid",
        ["DEFAULT_DOCUMENT_PRIOR", "HybridRetriever", "PreparedQuery", "pages_where"],
    ),
    "mm_retriever.document_prior": (
        "mm_retriever.ranking.document_prior",
        [
            "DocumentPrior",
            "IN_MEMORY_MAX_PAGES",
            "MAX_DOCUMENTS",
            "TITLE_REPEATS",
            "backfill_document_texts",
            "document_text",
            "document_text_options",
            "ensure_document_text_index",
            "missing_document_texts",
            "page_votes",
            "write_document_texts",
        ],
    ),
    "mm_retriever.page_images": ("mm_retriever.ranking.page_images", ["MIME", "PageImages"]),
    "mm_retriever.image_cache": (
        "mm_retriever.ranking.image_cache",
        ["DEFAULT_LIMIT_MB", "ENV_LIMIT", "ImageCache", "default_limit"],
    ),
    "mm_retriever.fusion": (
        "mm_retriever.ranking.fusion",
        ["Normalization", "RRFFusion", "WeightedFusion", "apply_document_prior"],
    ),
    "mm_retriever.filters": (
        "mm_retriever.store.filters",
        [
            "INT32",
            "MATCH_NOTHING",
            "and_where",
            "literal",
            "quote_string",
            "split_filters",
            "where_clause",
        ],
    ),
    "mm_retriever.maxsim_native": (
        "mm_retriever.multivector.maxsim_native",
        [
            "BINARY_SOURCE",
            "CFLAGS",
            "GENERIC_SOURCE",
            "REQUIRED_FLAGS",
            "SOURCE",
            "cache_dir",
            "cpu_flags",
            "load",
            "load_binary",
            "load_generic",
            "unavailable_reason",
        ],
    ),
    "mm_retriever.scoring": (
        "mm_retriever.multivector.scoring",
        ["MultiVectorMatrix", "maxsim", "pad_multivectors"],
    ),
    "mm_retriever.query_expansion": (
        "mm_retriever.query.query_expansion",
        [
            "BALANCE_SHEET",
            "CASH_FLOWS",
            "FinancialTerm",
            "INCOME_STATEMENT",
            "expand_query",
            "financial_expansion",
        ],
    ),
    "mm_retriever.query_text": (
        "mm_retriever.query.query_text",
        ["is_answer_instruction", "retrieval_text", "sentences"],
    ),
    "mm_retriever.references": (
        "mm_retriever.query.references",
        ["LISTING_LABELS", "Reference", "caption_regex", "is_listing", "matches", "references"],
    ),
    "mm_retriever.retrievers.base": (
        "mm_retriever.legs.base",
        [
            "EncoderSpec",
            "LegBase",
            "build_encoder",
            "encode_query_cached",
            "normalize_spec",
            "rank_pages",
            "resolved_spec",
            "top_indices",
        ],
    ),
    "mm_retriever.retrievers.bm25": (
        "mm_retriever.legs.bm25",
        [
            "BM25Retriever",
            "BM25S_STOPWORDS",
            "ENGINES",
            "SCHEMA",
            "SINGLE_CHARACTERS",
            "fold_ascii",
        ],
    ),
    "mm_retriever.retrievers.figure": (
        "mm_retriever.legs.figure",
        ["DEFAULT_IMAGE_ENCODER", "FigureRetriever"],
    ),
    "mm_retriever.retrievers.page": (
        "mm_retriever.legs.page",
        [
            "DEFAULT_PAGE_ENCODER",
            "FIRST_STAGES",
            "INDEX_TYPES",
            "PageImageRetriever",
            "STORAGE_DTYPES",
            "StaleRowsError",
        ],
    ),
    "mm_retriever.retrievers.text": (
        "mm_retriever.legs.text",
        ["DEFAULT_ANN_MIN_ROWS", "DEFAULT_TEXT_ENCODER", "TextRetriever", "page_chunks"],
    ),
}


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_path_is_the_moved_module(old: str) -> None:
    new, names = OLD_PATHS[old]
    moved = importlib.import_module(new)
    assert importlib.import_module(old) is moved
    for name in names:
        assert getattr(importlib.import_module(old), name) is getattr(moved, name), name
    parent, _, leaf = old.rpartition(".")
    assert getattr(importlib.import_module(parent), leaf) is moved  # `from parent import leaf`


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_path_imports_first_in_a_fresh_interpreter(old: str) -> None:
    """Imported before anything else of the package (no cycle through the alias)."""
    new, names = OLD_PATHS[old]
    code = f"import sys, {old}, {new}; assert sys.modules['{old}'] is {new}"
    code += f"; from {old} import {', '.join(names)}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
