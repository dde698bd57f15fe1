"""The page leg's similarity maps: per-patch MaxSim per query token (colpali-engine helpers)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from PIL import Image

from mm_retriever.explain.model import SimilarityMap

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ page leg

_encode_lock = threading.Lock()


def page_similarity(leg: Any, name: str, query: str, image: Image.Image) -> SimilarityMap:
    """MaxSim similarity maps of ``query`` over ``image`` for a ColPali-family page leg.

    The page image is re-encoded with the leg's model (the stored vectors carry no patch grid
    for every model family), then colpali-engine's ``get_similarity_maps_from_embeddings``
    gives one map per query token; special and padding tokens are dropped.
    """
    import torch
    from colpali_engine.interpretability.similarity_map_utils import (
        get_similarity_maps_from_embeddings,
    )

    encoder = leg.encoder
    model, processor = encoder._model, encoder._processor  # the encoder's loaded pair
    with _encode_lock, torch.inference_mode():
        batch_images = processor.process_images([image.convert("RGB")]).to(encoder.device)
        batch_queries = processor.process_queries([query]).to(encoder.device)
        image_emb = model(**batch_images).float()
        query_emb = model(**batch_queries).float()
    n_patches = _n_patches(processor, model, image, batch_images)
    image_mask = processor.get_image_mask(batch_images).cpu()
    maps = get_similarity_maps_from_embeddings(
        image_embeddings=image_emb.cpu(),
        query_embeddings=query_emb.cpu(),
        n_patches=n_patches,
        image_mask=image_mask,
    )[0]  # [n_query_tokens, n_patches_x, n_patches_y]
    ids = batch_queries["input_ids"][0].tolist()
    mask = batch_queries["attention_mask"][0].bool().tolist()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    keep = [i for i, (tid, m) in enumerate(zip(ids, mask, strict=True)) if m and tid not in special]
    keep = [i for i in keep if tokens[i].strip("▁ Ġ#") and i < maps.shape[0]] or list(
        range(maps.shape[0])
    )
    per_token = maps[keep].permute(0, 2, 1).numpy()  # -> [tokens, rows (y), cols (x)]
    return SimilarityMap(
        leg=name,
        tokens=[tokens[i] for i in keep],
        token_positions=keep,
        per_token=per_token,
        combined=per_token.max(axis=0),
    )


def _n_patches(processor: Any, model: Any, image: Image.Image, batch: Any) -> tuple[int, int]:
    """(n_patches_x, n_patches_y) of the processed image, across processor signatures."""
    attempts = (
        lambda: processor.get_n_patches(image.size, patch_size=model.patch_size),
        lambda: processor.get_n_patches(image.size, spatial_merge_size=model.spatial_merge_size),
        lambda: processor.get_n_patches(image.size),
    )
    for attempt in attempts:
        try:
            nx, ny = attempt()
            return int(nx), int(ny)
        except (AttributeError, TypeError):
            continue
    n = int(processor.get_image_mask(batch)[0].sum())
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"cannot infer the patch grid of {n} image tokens")
    return side, side
