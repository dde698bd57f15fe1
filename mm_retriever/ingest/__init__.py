"""Ingestion: files -> validated documents -> pages (image, text, OCR, chunks, figures)."""

from mm_retriever.ingest.files import SUPPORTED_SUFFIXES, document_id, iter_files
from mm_retriever.ingest.ocr import (
    OCREngine,
    OCRLine,
    OCRResult,
    PageOCR,
    cache_root,
    engine_cache_path,
    get_ocr_engine,
    ocr_cache_path,
)
from mm_retriever.ingest.reader import DocumentReader
from mm_retriever.ingest.render import encode_image

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DocumentReader",
    "OCREngine",
    "OCRLine",
    "OCRResult",
    "PageOCR",
    "cache_root",
    "document_id",
    "encode_image",
    "engine_cache_path",
    "get_ocr_engine",
    "iter_files",
    "ocr_cache_path",
]
