"""faiss's bundled OpenBLAS runs this CPU's kernels (index/faiss_blas.py), and exact search stays exact on both paths.

Each import check runs in a fresh interpreter: OpenBLAS chooses its kernel once, when the library is loaded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from index import ItemIndex
from index.faiss_blas import _GENERIC_CORES, _bundled_openblas, _cpu_flags, faiss, native_coretype
from tests.index.reference import brute_force

PROBE = """
import json, os
from index.faiss_blas import FORCED_CORETYPE, faiss, faiss_blas_core
print(json.dumps({"core": faiss_blas_core(), "forced": FORCED_CORETYPE, "env": os.environ.get("OPENBLAS_CORETYPE"),
                  "threshold": faiss.cvar.distance_compute_blas_threshold}))
"""

bundled = pytest.mark.skipif(
    not (platform.system() == "Linux" and platform.machine() == "x86_64" and _bundled_openblas() and native_coretype()),
    reason="needs Linux x86-64 with AVX2 and the faiss-cpu wheel's own OpenBLAS",
)


def probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_kernel_family_follows_the_cpu_flags():
    assert native_coretype({"sse3", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd", "avx2", "fma"}) == "SkylakeX"
    assert native_coretype({"avx512f", "avx2", "fma"}) == "Haswell"  # AVX-512 without BW/DQ/VL/CD is not SkylakeX
    assert native_coretype({"avx2", "fma"}) == "Haswell"
    assert native_coretype({"avx", "sse4_2"}) is None
    assert native_coretype(set()) is None


@bundled
def test_faiss_blas_runs_a_native_kernel_and_the_environment_is_left_as_it_was():
    seen = probe()
    assert seen["core"] is not None and seen["core"].lower() not in _GENERIC_CORES, seen
    assert seen["forced"] == native_coretype(_cpu_flags())
    assert seen["env"] is None  # restored after the import: numpy, scipy and child processes detect on their own
    assert seen["threshold"] == 8 * 64


@bundled
def test_a_users_own_openblas_coretype_is_respected():
    seen = probe(OPENBLAS_CORETYPE="Prescott")
    assert seen == {"core": "Prescott", "forced": None, "env": "Prescott", "threshold": seen["threshold"]}
    assert seen["threshold"] != 8 * 64  # faiss's own default


def test_exact_search_gives_the_same_hits_through_blas_and_through_faiss_own_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    q = rng.standard_normal((64, 64)).astype(np.float32)
    index = ItemIndex.build(x, [f"i{j}" for j in range(len(x))], use_gpu=False)
    exclude = [rng.choice(len(x), size=50, replace=False) for _ in q]
    saved = faiss.cvar.distance_compute_blas_threshold
    try:
        results = []
        for threshold in (0, 10**9):  # every search through BLAS, then none
            faiss.cvar.distance_compute_blas_threshold = threshold
            results.append(index.search_dense_ids(q, 10, exclude=exclude))
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved
    (ids_blas, s_blas), (ids_loop, s_loop) = results
    np.testing.assert_array_equal(ids_blas, ids_loop)
    np.testing.assert_allclose(s_blas, s_loop, rtol=1e-5, atol=1e-5)
    top, _ = brute_force(x, q, 10, [set(e.tolist()) for e in exclude])  # and both are the true top 10 outside the exclusions
    np.testing.assert_array_equal(ids_blas, top)
