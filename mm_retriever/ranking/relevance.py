"""How sure a hit is: a calibrated ``confidence`` in [0, 1], and a relevance floor.

The fused ``score`` only orders pages within one query (z-scored leg scores have no fixed
scale), so it cannot say that nothing matched. ``confidence`` can: the probability that the
hit's document holds the answer, from the raw scores of the legs that have a fixed scale (the
dense text leg's cosine, and whether BM25 matched the page), through a logistic map fitted on the
dev sets by ``benchmarks/relevance_floor/fit.py`` (positives: dev questions over an index that
holds their document; negatives: the same questions with that document filtered out, the other
dev set's questions, gibberish). Its
results and the exact command are in ``benchmarks/relevance_floor/``.

The map holds only for the legs it was fitted on (the text model and BM25 settings in
``CALIBRATED``); over other legs ``confidence`` and ``weak_match`` are None. ``weak_match`` is
``confidence < WEAK_BELOW``; ``min_score`` (per call, or the retriever's) drops hits with a
lower ``confidence``, so an agent may get no pages and answer "not in these documents".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mm_retriever.errors import InvalidQueryError

# --- fitted by benchmarks/relevance_floor/fit.py (see its README for the command and results)
CALIBRATED = {
    "text": "all-minilm-l6-v2",  # in the text leg's model name or folder
    "bm25": "any",  # whether it matched: the same on every corpus and setting
}
# per set of calibrated legs present: intercept and one weight per feature
MODELS: dict[tuple[str, ...], dict[str, float]] = {
    ("bm25", "text"): {"intercept": -4.5369, "bm25": 2.4418, "text": 5.6465},
    ("bm25",): {"intercept": -2.3917, "bm25": 2.7274},
    ("text",): {"intercept": -2.8497, "text": 6.5836},
}
WEAK_BELOW = 0.5  # the default floor: a hit under it is a weak match
# ---
_WORD = re.compile(r"\w\w+")


def leg_signature(leg: Any) -> str | None:
    """What decides the scale of a leg's raw scores: its text model (name and folder,
    lower-case, '_' as '-'), or its BM25 engine, unit, k1 and b."""
    kind = getattr(leg, "kind", "")
    if kind == "text":
        encoder = getattr(leg, "encoder", None)
        names = (getattr(encoder, "model_name", ""), str(getattr(encoder, "path", "") or ""))
        return " ".join(names).lower().replace("_", "-")
    if kind == "bm25":
        return f"{leg.engine}/{leg.unit}/k1={leg.k1:g}/b={leg.b:g}"
    return None


def calibrated_legs(legs: Mapping[str, Any]) -> dict[str, str]:
    """Leg name -> feature name ("text", "bm25") for the legs the calibration knows: the text
    leg with the calibrated model (by name or folder), and BM25."""
    out = {}
    for name, leg in legs.items():
        kind = getattr(leg, "kind", "")
        if kind not in CALIBRATED or kind in out.values():
            continue
        if kind == "bm25" or CALIBRATED[kind] in (leg_signature(leg) or ""):
            out[name] = kind
    return out


def query_words(text: str) -> int:
    """Words of the query the legs saw (BM25's score is a sum over them)."""
    return max(1, len(_WORD.findall(text)))


def features(leg_scores: Mapping[str, float], legs: Mapping[str, str]) -> dict[str, float]:
    """The calibration's features of one hit: the text leg's cosine (0 where it did not return
    the page), and whether BM25 matched the page at all (1/0). BM25's own score is left out: its
    scale follows the corpus (IDF, page length): a map of it fitted on slides and reports put
    every FinanceBench question under the floor."""
    out = {}
    for name, kind in legs.items():
        value = max(0.0, float(leg_scores.get(name, 0.0)))
        out[kind] = float(value > 0.0) if kind == "bm25" else value
    return out


def confidence(leg_scores: Mapping[str, float], legs: Mapping[str, str]) -> float | None:
    """P(the hit's document holds the answer), or None without calibrated legs."""
    model = MODELS.get(tuple(sorted(legs.values())))
    if model is None:
        return None
    z = model["intercept"] + sum(
        model[f] * v for f, v in features(leg_scores, legs).items() if f in model
    )
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def check_min_score(min_score: object) -> float | None:
    """``min_score`` as a float in [0, 1], or None (no floor)."""
    if min_score is None:
        return None
    if isinstance(min_score, bool) or not isinstance(min_score, int | float):
        raise InvalidQueryError(f"min_score must be a number from 0 to 1, got {min_score!r}")
    if not 0.0 <= float(min_score) <= 1.0:
        raise InvalidQueryError(f"min_score must be a number from 0 to 1, got {min_score!r}")
    return float(min_score)


def rate(pages: Iterable[Any], legs: Mapping[str, Any]) -> None:
    """Set ``confidence`` and ``weak_match`` of each retrieved page (in place)."""
    known = calibrated_legs(legs)
    for page in pages:
        page.confidence = confidence(page.leg_scores, known) if known else None
        page.weak_match = None if page.confidence is None else page.confidence < WEAK_BELOW


def apply_floor(pages: Sequence[Any], min_score: float | None, legs: Mapping[str, Any]) -> list:
    """``pages`` rated, without those under ``min_score`` (None: all of them)."""
    rate(pages, legs)
    if min_score is None:
        return list(pages)
    if not calibrated_legs(legs):
        raise InvalidQueryError(
            "min_score needs a calibrated confidence, and none of this retriever's legs "
            f"({', '.join(legs) or 'none'}) is calibrated (calibrated: the text leg with "
            f"{CALIBRATED['text']}, the bm25 leg)"
        )
    return [p for p in pages if p.confidence is not None and p.confidence >= min_score]
