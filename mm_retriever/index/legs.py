"""Leg construction: a leg instance from its ``LegSpec`` (registry name and options)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from mm_retriever import registry
from mm_retriever.config import LegSpec
from mm_retriever.errors import MissingExtraError, ModelUnavailableError
from mm_retriever.protocols import Leg, PluginLeg

log = logging.getLogger("mm_retriever")


def _accepts(factory: Any, param: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return param in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def check_options(spec: LegSpec, factory: Any) -> dict[str, Any]:
    """``spec.options`` validated by the leg class's typed ``Options`` (the ones given only, so
    the constructor's defaults apply); a leg without such a model gets them as they are."""
    model = factory.Options if isinstance(factory, type) and issubclass(factory, Leg) else None
    if model is None:
        return dict(spec.options)
    try:
        return model.model_validate(spec.options).model_dump(exclude_unset=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"leg '{spec.leg_name}' options: {problems}") from None


def build_leg(spec: LegSpec, device: str | None) -> Leg:
    """Instantiate a leg from its spec (``name`` and ``device`` passed when the leg takes them)."""
    factory = registry.legs.get(spec.name)
    kwargs = check_options(spec, factory)
    if _accepts(factory, "name"):
        kwargs["name"] = spec.leg_name
    if device is not None and _accepts(factory, "device"):
        kwargs["device"] = device
    leg = factory(**kwargs)
    if not isinstance(leg, Leg):  # a plugin written before protocols.Leg: Leg's defaults added
        leg = PluginLeg(leg, kind=spec.name)
    if leg.name != spec.leg_name:
        leg.name = spec.leg_name
    return leg


def build_legs(
    specs: Iterable[LegSpec], device: str | None
) -> tuple[dict[str, Leg], dict[str, str]]:
    """Legs by name, plus the skipped ones (name -> reason) whose model or package is missing."""
    legs: dict[str, Leg] = {}
    skipped: dict[str, str] = {}
    for spec in specs:
        name = spec.leg_name
        if name in legs or name in skipped:
            raise ValueError(f"two legs are named '{name}'; give one an alias")
        try:
            legs[name] = build_leg(spec, device)
        except (ModelUnavailableError, MissingExtraError) as exc:
            skipped[name] = str(exc)
            log.warning("leg '%s' skipped: %s", name, exc)
    return legs, skipped
