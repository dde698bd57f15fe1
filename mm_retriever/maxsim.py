"""The old home of the exact MaxSim kernel, now :mod:`mm_retriever.multivector.maxsim`."""

from mm_retriever.multivector.maxsim import (
    BACKENDS,
    amx_available,
    maxsim_flat,
    maxsim_flat_batch,
    maxsim_flat_reference,
)

__all__ = ["BACKENDS", "amx_available", "maxsim_flat", "maxsim_flat_batch", "maxsim_flat_reference"]
