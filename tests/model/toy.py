"""Small hand-built datasets for model tests (no files, no randomness beyond the given seed)."""

from __future__ import annotations

import numpy as np

from model.data.dataset import PreparedDataset, Sequences, Split
from model.features import FeatureStats


def toy_dataset(n_users: int = 12, n_items: int = 9, min_len: int = 5, max_len: int = 14, seed: int = 0, pattern: bool = False) -> PreparedDataset:
    """Leave-one-out dataset. With ``pattern`` every user walks the items cyclically (item i -> i+1), so
    the next item is perfectly predictable from the last one."""
    rng = np.random.default_rng(seed)
    items, times, lengths = [], [], []
    for u in range(n_users):
        L = int(rng.integers(min_len, max_len + 1))
        if pattern:
            start = int(rng.integers(0, n_items))
            seq = (start + np.arange(L)) % n_items + 1
        else:
            seq = rng.integers(1, n_items + 1, size=L)
        t = 1_000_000 + np.cumsum(rng.integers(1, 100_000, size=L))
        items.append(seq)
        times.append(t)
        lengths.append(L)
    lengths = np.asarray(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    seqs = Sequences(
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_ids=np.array(["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)]),
        offsets=offsets,
        items=np.concatenate(items).astype(np.int64),
        times=np.concatenate(times).astype(np.int64),
    )
    users = np.arange(n_users)
    split = Split("loo", lengths - 2, np.stack([users, lengths - 2], 1), np.stack([users, lengths - 1], 1))
    return PreparedDataset(seqs, split, {"hash": f"toy-{seed}-{pattern}"})


def toy_stats(data: PreparedDataset, n_freq_buckets: int = 8) -> FeatureStats:
    s = data.sequences
    return FeatureStats.fit(s.items, s.times, s.offsets, data.split.train_len, s.n_items, n_freq_buckets=n_freq_buckets)
