"""Plumbing the built-in encoders share: device/dtype/batch-size settings, batching, config."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def set_runtime(encoder: Any, device: str, dtype: str | None, batch_size: int) -> None:
    """Check ``batch_size``, then record the settings as given and the resolved device/dtype.

    Sets ``device_name``, ``dtype_name``, ``batch_size``, ``device`` and ``dtype`` on ``encoder``.
    """
    from mm_retriever.device import resolve_device, resolve_dtype

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    encoder.device_name = device
    encoder.dtype_name = dtype
    encoder.batch_size = batch_size
    encoder.device = resolve_device(device)
    encoder.dtype = resolve_dtype(dtype, encoder.device)


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items``, ``size`` long (the last one may be shorter)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def runtime_config(encoder: Any) -> dict[str, Any]:
    """The model and the settings recorded by ``set_runtime``, as constructor arguments."""
    return {
        "model": encoder.model_name,
        "device": encoder.device_name,
        "dtype": encoder.dtype_name,
        "batch_size": encoder.batch_size,
    }


def checkpoint_repr(encoder: Any) -> str:
    """``Class(model=..., type=..., dim=..., device=...)`` for an encoder of a checkpoint."""
    return (
        f"{type(encoder).__name__}(model={encoder.model_name!r}, type={encoder.model_type!r}, "
        f"dim={encoder.dim}, device={str(encoder.device)!r})"
    )
