"""The compiled MaxSim kernels: built on first use, loaded through ctypes.

Two C sources ship with the package and are compiled once with the system C compiler (``$CC``
or ``cc``) into a per-user cache (``$MM_RETRIEVER_KERNEL_CACHE`` or
``~/.cache/mm-retriever/kernels``):

- ``_maxsim_amx.c`` (:func:`load`): x86-64 Linux CPUs with AMX-BF16 and AVX512-BF16;
- ``_maxsim_generic.c`` (:func:`load_generic`): any CPU, float32 SIMD code built with
  ``-march=native`` (AVX2 / AVX-512 / NEON).
- ``_maxsim_binary.c`` (:func:`load_binary`): any CPU, float query against sign-bit page
  vectors through per-byte lookup tables (the ``binary`` first stage).

Wherever one cannot be had (another CPU, no compiler, the OS refusing AMX) its loader returns
``None`` and :func:`unavailable_reason` says why; callers then use the next exact path.
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
GENERIC_SOURCE = Path(__file__).with_name("_maxsim_generic.c")
BINARY_SOURCE = Path(__file__).with_name("_maxsim_binary.c")
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


def _build(compiler: str, source: Path = SOURCE, cflags: tuple[str, ...] = CFLAGS) -> Path:
    """Compile ``source`` into the cache; return the .so path.

    Once per source, flags, compiler and CPU (``-march=native`` code must not be shared with
    another machine through a shared home)."""
    ident = " ".join((compiler, *cflags, platform.machine(), *sorted(cpu_flags())))
    key = hashlib.sha256(source.read_bytes() + ident.encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem.lstrip('_')}_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [compiler, *cflags, str(source), "-o", tmp, "-lm"],
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
    i64, i32, p = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.mm_maxsim_amx.restype = ctypes.c_int
    lib.mm_maxsim_amx.argtypes = [p, i32, i64, p, p, i64, p, p, i32, i32, p, i32, p, i64]
    return lib


def _build_portable(source: Path) -> ctypes.CDLL:
    """``source`` built with ``-march=native`` (or portable code where the flag is refused)."""
    compiler = os.environ.get("CC", "cc")
    arch = "-mcpu=native" if platform.machine().lower() in ("aarch64", "arm64") else "-march=native"
    base = ("-O3", "-std=c11", "-ffp-contract=fast", "-Wno-psabi", "-shared", "-fPIC")
    try:
        path = _build(compiler, source, (*base, arch))
    except RuntimeError:  # a compiler without -march=native: portable code
        path = _build(compiler, source, base)
    return ctypes.CDLL(str(path))


def _load_binary() -> ctypes.CDLL:
    lib = _build_portable(BINARY_SOURCE)
    i64, i32, p = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.mm_maxsim_binary.restype = ctypes.c_int
    lib.mm_maxsim_binary.argtypes = [p, i64, p, p, i64, p, i32, i32, p]
    return lib


def _load_generic() -> ctypes.CDLL:
    lib = _build_portable(GENERIC_SOURCE)
    i64, i32, p = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.mm_maxsim_generic.restype = ctypes.c_int
    lib.mm_maxsim_generic.argtypes = [p, i32, i64, p, p, i64, p, i32, p, i32, p, i64]
    return lib


def _cached(name: str, loader) -> ctypes.CDLL | None:
    with _lock:
        if name not in _state:
            try:
                _state[name] = loader()
            except Exception as exc:  # any failure means: use the next exact path
                _state[name] = None
                _state[f"{name}_reason"] = f"{type(exc).__name__}: {exc}"
                log.info("MaxSim kernel %s unavailable: %s", name, _state[f"{name}_reason"])
        return _state[name]  # type: ignore[return-value]


def load() -> ctypes.CDLL | None:
    """The AMX kernel library, or ``None`` where it cannot run here (reason logged once)."""
    return _cached("amx", _load)


def load_generic() -> ctypes.CDLL | None:
    """The portable float32 kernel library, or ``None`` where it cannot be built here."""
    return _cached("cpu", _load_generic)


def load_binary() -> ctypes.CDLL | None:
    """The sign-bit MaxSim kernel library, or ``None`` where it cannot be built here."""
    return _cached("binary", _load_binary)


def unavailable_reason(name: str = "amx") -> str | None:
    """Why kernel ``name`` ("amx", "cpu", "binary") did not load (``None``: loaded or not tried)."""
    return _state.get(f"{name}_reason")  # type: ignore[return-value]
