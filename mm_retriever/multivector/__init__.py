"""Multivector indexes behind the page leg: exact and two-stage (compact first stage + rerank)."""

from mm_retriever.multivector.base import Key, MultiVectorIndex, top_k
from mm_retriever.multivector.exact import ExactIndex
from mm_retriever.multivector.first_stage import BinaryFirstStage, MeanFirstStage
from mm_retriever.multivector.flat import FlatMultiVectors
from mm_retriever.multivector.quantize import (
    pool_tokens,
    quantize_int8,
    segment_means,
    sign_bits,
    unpack_signs,
)
from mm_retriever.multivector.two_stage import TwoStageIndex

__all__ = [
    "BinaryFirstStage",
    "ExactIndex",
    "FlatMultiVectors",
    "Key",
    "MeanFirstStage",
    "MultiVectorIndex",
    "TwoStageIndex",
    "pool_tokens",
    "quantize_int8",
    "segment_means",
    "sign_bits",
    "top_k",
    "unpack_signs",
]
