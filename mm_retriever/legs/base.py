"""Shared plumbing for the built-in legs: encoder specs, a shared encoder cache, page ranking."""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from mm_retriever import registry
from mm_retriever.protocols import Leg
from mm_retriever.store.schema import leg_table
from mm_retriever.types import LegHit

EncoderSpec = Mapping[str, Any]

_cache: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()


def normalize_spec(spec: Any, default: EncoderSpec | None = None) -> dict[str, Any]:
    """``{"name": ..., "options": {...}}`` from a dict, a PluginSpec, or None (-> default)."""
    if spec is None:
        if default is None:
            raise ValueError("an encoder spec is required")
        spec = default
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump()
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(f"encoder spec must be {{'name': ..., 'options': {{...}}}}, got {spec!r}")
    unknown = set(spec) - {"name", "options"}
    if unknown:
        raise ValueError(f"encoder spec has unknown keys {sorted(unknown)}")
    return {"name": str(spec["name"]), "options": dict(spec.get("options") or {})}


def build_encoder(spec: Mapping[str, Any], device: str | None = None) -> Any:
    """Create (or reuse) the encoder for ``spec``; ``device`` overrides the spec's device.

    Legs that ask for the same encoder with the same options share one instance (the text and
    figure legs usually embed text with the same model), so a model is loaded once. Two specs
    that resolve to the same settings (a config's short spec, a reopened index's resolved one)
    get one instance too: the one already alive under the resolved settings, whichever spec
    asked first.
    """
    spec = normalize_spec(spec)
    options = dict(spec["options"])
    if device is not None:
        options["device"] = device
    key = _key(spec["name"], {"device": "auto", **options})  # encoders default to "auto"
    with _cache_lock:
        enc = _cache.get(key)
        if enc is None:
            enc = registry.encoders.create(spec["name"], **options)
            # the same encoder asked for by its resolved settings (a reopened index) is shared
            # too; one already alive under them wins, so every spec ends on that one instance
            resolved = dict(enc.config()) if hasattr(enc, "config") else None
            if resolved is not None:
                resolved["device"] = options.get("device", "auto")
                enc = _cache.setdefault(_key(spec["name"], resolved), enc)
            _cache[key] = enc
    return enc


def _key(name: str, options: Mapping[str, Any]) -> str:
    return json.dumps([name, options], sort_keys=True, default=str)


_query_cache: weakref.WeakKeyDictionary[Any, OrderedDict[str, Any]] = weakref.WeakKeyDictionary()


def encode_query_cached(encoder: Any, text: str, size: int = 64) -> Any:
    """``encoder.encode_query([text])[0]``, remembered for the last ``size`` texts per encoder.

    Legs sharing an encoder (text and figure) then embed a query once per search.
    """
    with _cache_lock:
        try:
            memo = _query_cache.setdefault(encoder, OrderedDict())
        except TypeError:  # not weak-referenceable
            memo = None
        if memo is not None and text in memo:
            memo.move_to_end(text)
            return memo[text]
    if memo is None:
        return encoder.encode_query([text])[0]
    with _encoding_lock(encoder):  # legs running together embed a query once
        with _cache_lock:
            if text in memo:
                return memo[text]
        vec = encoder.encode_query([text])[0]
        with _cache_lock:
            memo[text] = vec
            while len(memo) > size:
                memo.popitem(last=False)
    return vec


_encoding_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()


def _encoding_lock(encoder: Any) -> threading.Lock:
    with _cache_lock:
        return _encoding_locks.setdefault(encoder, threading.Lock())


def resolved_spec(name: str, encoder: Any) -> dict[str, Any]:
    """The spec that rebuilds ``encoder`` (its own ``config()``, device left to the index)."""
    options = dict(encoder.config())
    options.pop("device", None)
    return {"name": name, "options": options}


def rank_pages(items: Iterable[tuple[str, int, float, int | None, str]], k: int) -> list[LegHit]:
    """Page-level hits from sub-page items ``(doc_id, page_index, score, part, text)``.

    A page scores the max over its parts; ``matched`` lists its parts best first (their scores
    in ``matched_scores``) and ``matched_text`` is the best part's text. Ties break on
    (doc_id, page_index).
    """
    pages: dict[tuple[str, int], LegHit] = {}
    parts: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for doc_id, page_index, score, part, text in items:
        key = (doc_id, int(page_index))
        score = float(score)
        hit = pages.get(key)
        if hit is None or score > hit.score:
            if hit is None:
                hit = pages[key] = LegHit(doc_id, int(page_index), score)
            hit.score = score
            hit.matched_text = text or ""
        if part is not None and part >= 0:
            parts.setdefault(key, []).append((score, int(part)))
    for key, found in parts.items():
        best: dict[int, float] = {}
        for score, part in sorted(found, key=lambda t: (-t[0], t[1])):
            best.setdefault(part, score)
        pages[key].matched = list(best)
        pages[key].matched_scores = list(best.values())
    ranked = sorted(pages.values(), key=lambda h: (-h.score, h.doc_id, h.page_index))[:k]
    for i, hit in enumerate(ranked, start=1):
        hit.rank = i
    return ranked


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first, ties by index (stable)."""
    if k <= 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    return order[:k]


class LegOptions(BaseModel):
    """Base of the built-in legs' typed options (unknown keys are errors). Encoder specs are
    ``{"name": ..., "options": {...}}`` (or a registry name), checked by ``normalize_spec``."""

    model_config = ConfigDict(extra="forbid")


class LegBase(Leg):
    """Name, device and table name shared by the built-in legs."""

    def options_dump(self, **values: Any) -> dict[str, Any]:
        """``values`` validated by the leg's ``Options`` model, as ``config()`` returns them."""
        assert self.Options is not None
        return self.Options.model_validate(values).model_dump(mode="json")

    def __init__(self, name: str, device: str | None = None) -> None:
        self.name = name
        self.device = device

    @property
    def table(self) -> str:
        return leg_table(self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
