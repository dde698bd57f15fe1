"""The compiled AMX MaxSim kernel (``_maxsim_amx.c``): built on first use, loaded through ctypes.

The C source ships with the package; on an x86-64 Linux CPU with AMX-BF16 and AVX512-BF16 it
is compiled once with the system C compiler (``$CC`` or ``cc``) into a per-user cache
(``$MM_RETRIEVER_KERNEL_CACHE`` or ``~/.cache/mm-retriever/kernels``). Wherever that cannot
happen (another CPU, no compiler, the kernel refusing AMX) :func:`load` returns ``None`` and
:func:`unavailable_reason` says why; callers then use the exact torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_maxsim_amx.c")
CFLAGS = ("-O3", "-std=c11", "-mavx512f", "-mavx512bf16", "-mamx-tile", "-mamx-bf16")
CFLAGS += ("-mf16c", "-shared", "-fPIC", "-D_GNU_SOURCE")
REQUIRED_FLAGS = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16")

_lock = threading.Lock()
_state: dict[str, object] = {}


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cache_dir() -> Path:
    env = os.environ.get("MM_RETRIEVER_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mm-retriever" / "kernels"


def _build(compiler: str) -> Path:
    """Compile the kernel into the cache (once per source/flags/compiler); return the .so path."""
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join((compiler, *CFLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"maxsim_amx_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler, *CFLAGS, str(SOURCE), "-o", tmp, "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip()[-800:]}")
        os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL:
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise RuntimeError(f"needs x86-64 Linux, this is {sys.platform}/{platform.machine()}")
    missing = [f for f in REQUIRED_FLAGS if f not in cpu_flags()]
    if missing:
        raise RuntimeError(f"CPU lacks {', '.join(missing)}")
    lib = ctypes.CDLL(str(_build(os.environ.get("CC", "cc"))))
    if lib.mm_amx_init() != 0:
        raise RuntimeError("the OS refused AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)")
    i64, p = ctypes.c_int64, ctypes.c_void_p
    lib.mm_maxsim_amx.restype = ctypes.c_int
    lib.mm_maxsim_amx.argtypes = [
        p,
        ctypes.c_int,
        i64,
        p,
        p,
        i64,
        p,
        p,
        ctypes.c_int,
        ctypes.c_int,
        p,
        ctypes.c_int,
        p,
        i64,
    ]
    return lib


def load() -> ctypes.CDLL | None:
    """The loaded kernel library, or ``None`` where it cannot run here (reason logged once)."""
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _load()
            except Exception as exc:  # any failure means: use the exact torch path
                _state["lib"] = None
                _state["reason"] = f"{type(exc).__name__}: {exc}"
                log.info("AMX MaxSim kernel unavailable, using torch: %s", _state["reason"])
        return _state["lib"]  # type: ignore[return-value]


def unavailable_reason() -> str | None:
    """Why :func:`load` returned ``None`` (``None`` when the kernel is loaded or not tried)."""
    return _state.get("reason")  # type: ignore[return-value]
