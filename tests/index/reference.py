"""The exact top-k that the index tests compare faiss against."""

from __future__ import annotations

import numpy as np


def brute_force(x: np.ndarray, q: np.ndarray, k: int, excluded: list[set[int]] | None = None):
    """Reference top-k by inner product: score desc, then position asc; excluded rows never returned."""
    s = q.astype(np.float64) @ x.astype(np.float64).T
    if excluded is not None:
        for b, ex in enumerate(excluded):
            s[b, list(ex)] = -np.inf
    pos = np.arange(x.shape[0])
    top = np.stack([np.lexsort((pos, -row))[:k] for row in s])
    return top, np.take_along_axis(s, top, axis=1)
