"""Appendix A features: normalised time intervals and item frequency buckets.

This is the one module both training and the streaming worker import, so the two can never disagree on
how a raw timestamp or item becomes a model input. Statistics are fitted on training interactions only
and saved in the model artifact; at serving time values outside the fitted range are clipped.

* Interval ``dt_j = |t_j - t_{j-1}|`` (seconds; 0 for a user's first interaction), passed through
  ``log1p`` by default before min-max normalisation: raw intervals span seconds to years, so a plain
  min-max maps almost every interval to ~0 (``interval_transform="identity"`` gives the literal reading).
* Frequency ``f_i`` = training count of item i normalised to [0, 1] (``log1p(count) / log1p(max)`` by
  default, ``count / max`` with ``freq_transform="linear"``), quantised into ``n_freq_buckets`` ids
  (1..n_freq_buckets; 0 is padding) that index a trainable embedding ``e_{f_i}``. Items unseen in training
  (new items in the stream) get f = 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np


@dataclass
class FeatureStats:
    interval_transform: Literal["log1p", "identity"]
    interval_min: float
    interval_max: float
    freq_transform: Literal["log1p", "linear"]
    n_freq_buckets: int
    item_counts: np.ndarray  # (n_items + 1,) int64 training counts; index 0 (padding) is 0

    # ---- fitting ----------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        items: np.ndarray,
        times: np.ndarray,
        offsets: np.ndarray,
        train_len: np.ndarray,
        n_items: int,
        interval_transform: str = "log1p",
        freq_transform: str = "log1p",
        n_freq_buckets: int = 32,
    ) -> "FeatureStats":
        """Fit on the training prefix of every user (never on validation / test interactions)."""
        lengths = np.diff(offsets)
        pos = np.arange(len(items)) - np.repeat(offsets[:-1], lengths)
        in_train = pos < np.repeat(train_len, lengths)
        counts = np.bincount(items[in_train], minlength=n_items + 1).astype(np.int64)
        counts[0] = 0
        # intervals between consecutive training interactions of the same user (j >= 2)
        consecutive = in_train & (pos >= 1)
        dts = np.abs(times[consecutive] - times[np.flatnonzero(consecutive) - 1]).astype(np.float64)
        g = _interval_transform(dts, interval_transform)
        lo, hi = (float(g.min()), float(g.max())) if len(g) else (0.0, 1.0)
        return cls(interval_transform, lo, hi, freq_transform, int(n_freq_buckets), counts)

    # ---- transforms -------------------------------------------------------------------------------
    def interval_feature(self, dt_seconds) -> np.ndarray:
        """Raw non-negative intervals (seconds) -> normalised values in [0, 1] (clipped)."""
        g = _interval_transform(np.abs(np.asarray(dt_seconds, dtype=np.float64)), self.interval_transform)
        span = self.interval_max - self.interval_min
        out = (g - self.interval_min) / span if span > 0 else np.zeros_like(g)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def sequence_intervals(self, times: np.ndarray) -> np.ndarray:
        """Chronological timestamps of one user -> normalised interval per interaction (first = 0)."""
        times = np.asarray(times, dtype=np.int64)
        if len(times) == 0:
            return np.zeros(0, dtype=np.float32)
        feats = self.interval_feature(np.diff(times, prepend=times[0]))
        feats[0] = 0.0
        return feats

    def item_frequency(self, items) -> np.ndarray:
        """Dense item ids -> normalised training frequency in [0, 1]; ids beyond the vocabulary -> 0."""
        items = np.asarray(items, dtype=np.int64)
        known = (items > 0) & (items < len(self.item_counts))
        counts = np.where(known, self.item_counts[np.where(known, items, 0)], 0).astype(np.float64)
        top = float(self.item_counts.max()) if len(self.item_counts) else 0.0
        if top <= 0:
            return np.zeros_like(counts, dtype=np.float32)
        if self.freq_transform == "log1p":
            f = np.log1p(counts) / np.log1p(top)
        else:
            f = counts / top
        return np.clip(f, 0.0, 1.0).astype(np.float32)

    def frequency_bucket(self, items) -> np.ndarray:
        """Dense item ids -> frequency bucket ids 1..n_freq_buckets (0 only for padding items)."""
        items = np.asarray(items, dtype=np.int64)
        f = self.item_frequency(items)
        buckets = 1 + np.minimum((f * self.n_freq_buckets).astype(np.int64), self.n_freq_buckets - 1)
        return np.where(items == 0, 0, buckets)

    # ---- persistence (JSON-safe, no pickle) ---------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["item_counts"] = self.item_counts.astype(int).tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureStats":
        d = dict(d)
        d["item_counts"] = np.asarray(d["item_counts"], dtype=np.int64)
        return cls(**d)


def _interval_transform(dt: np.ndarray, kind: str) -> np.ndarray:
    if kind == "log1p":
        return np.log1p(dt)
    if kind == "identity":
        return dt
    raise ValueError(f"unknown interval_transform {kind!r} (expected 'log1p' or 'identity')")
