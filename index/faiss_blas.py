"""faiss, imported once for the whole project, with its BLAS running this CPU's kernels.

Why. The ``faiss-cpu`` wheel brings its own OpenBLAS (0.3.15 in faiss-cpu 1.15), which picks its kernels by
recognising the CPU. It does not know recent Intel server CPUs and falls back to its generic SSE3 kernel
("Prescott"): on this project's 2-core machine a 253 x 64 by 64 x 3,416 product took ~7 ms there against
~1 ms in numpy's own (newer) OpenBLAS. faiss 1.15 also keeps exact searches of fewer than 128,000 / d
queries off BLAS altogether (``distance_compute_blas_threshold``, compared with queries x d), which is
right for that slow kernel and wrong for a native one: with the AVX-512 kernel an exact top-10 over 3,416
items costs ~9 us per query in a batch of 253 queries instead of ~35 (benchmarks: ``bench_index.py``,
``bench_engine.py --interleave``; README of ``stream/``).

What. Before faiss is imported, if the user has not set ``OPENBLAS_CORETYPE`` and Linux reports AVX-512
(F, BW, DQ, VL, CD: the SkylakeX kernel's instructions) or AVX2 + FMA (Haswell's), OpenBLAS is told that
kernel for the duration of the import (the variable is restored afterwards, so numpy, scipy and child
processes keep their own detection), and exact searches of 8 or more queries (d = 64; :data:`BLAS_THRESHOLD`
queries x dimensions) go through BLAS. Elsewhere (other CPUs or systems, a user's own
``OPENBLAS_CORETYPE``, a faiss built on another BLAS) nothing is changed. :func:`blas_report` says what faiss's BLAS runs (logged by the worker).

Every module that needs faiss imports it from here (``from index.faiss_blas import faiss``).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
from pathlib import Path

import numpy  # noqa: F401  numpy's own OpenBLAS initialises first, with its own detection

# queries x dimensions of an exact search from which BLAS beats faiss's own loop once the kernel is native
# (measured on the 2-core machine, d = 64, 3,416 items: about equal at 4 queries, BLAS 1.4x faster at 8, 2x at 16)
BLAS_THRESHOLD = 8 * 64
_GENERIC_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "unknown"}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_coretype(flags: set[str] | None = None) -> str | None:
    """The OpenBLAS kernel family this x86-64 CPU can run (None: leave OpenBLAS to its own detection)."""
    flags = _cpu_flags() if flags is None else flags
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def _bundled_openblas() -> list[Path]:
    """OpenBLAS libraries shipped inside a faiss wheel (``faiss_cpu.libs``, or a GPU wheel's), found without importing faiss."""
    spec = importlib.util.find_spec("faiss")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations))).parent.glob("faiss*.libs/libopenblas*.so*"))


def _import_faiss():
    forced = None
    if "OPENBLAS_CORETYPE" not in os.environ and platform.system() == "Linux" and platform.machine() == "x86_64" and _bundled_openblas():
        forced = native_coretype()
    if forced is None:
        import faiss as module

        return module, None
    os.environ["OPENBLAS_CORETYPE"] = forced
    try:
        import faiss as module
    finally:
        del os.environ["OPENBLAS_CORETYPE"]
    return module, forced


faiss, FORCED_CORETYPE = _import_faiss()
if FORCED_CORETYPE is not None:
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD  # faiss compares queries x d with it


def openblas_cores() -> dict[str, str]:
    """The kernel each OpenBLAS loaded in this process runs, by library file name (Linux only; {} elsewhere)."""
    cores: dict[str, str] = {}
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return cores
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("openblas_get_corename", "scipy_openblas_get_corename64_", "openblas_get_corename64_"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                getter.restype = ctypes.c_char_p
                cores[Path(path).name] = getter().decode()
                break
    return cores


def faiss_blas_core() -> str | None:
    """The kernel of the OpenBLAS bundled with faiss, when faiss brings one and it is loaded."""
    bundled = {p.name for p in _bundled_openblas()}
    return next((core for name, core in openblas_cores().items() if name in bundled), None)


def blas_report() -> str:
    core = faiss_blas_core()
    if core is None:
        return "faiss BLAS: not a bundled OpenBLAS (left as it is)"
    how = f"OPENBLAS_CORETYPE={FORCED_CORETYPE} at import" if FORCED_CORETYPE else "OpenBLAS's own detection"
    generic = " (generic kernel: exact searches are slow; set OPENBLAS_CORETYPE)" if core.lower() in _GENERIC_CORES else ""
    return f"faiss BLAS: OpenBLAS kernel {core} ({how}), exact searches use BLAS from {faiss.cvar.distance_compute_blas_threshold} queries x dims{generic}"
