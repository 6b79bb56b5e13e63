"""Prepared sequences -> padded tensor batches for training (every prefix) and evaluation.

Sequences are left-padded (right-aligned): the most recent interaction is always at index -1, which is
what recurrent encoders, SASRec and the streaming worker's window all assume. Training batches are
bucketed by length under a token budget so long histories do not blow up memory and short ones do not
waste it on padding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np
import torch

from model.data.dataset import PreparedDataset
from model.features import FeatureStats


@dataclass
class SeqBatch:
    items: torch.Tensor  # (B, L) long, 0 = padding, left-padded
    intervals: torch.Tensor  # (B, L) float, normalised dt in [0, 1] (0 at padding and first item)
    freqs: torch.Tensor  # (B, L) long frequency bucket ids (0 at padding)
    lengths: torch.Tensor  # (B,) long, number of real items per row
    users: torch.Tensor  # (B,) long dense user ids
    targets: torch.Tensor | None = None  # (B, L) long next item at each position (training), 0 = none

    def to(self, device) -> "SeqBatch":
        return SeqBatch(**{f.name: (None if (v := getattr(self, f.name)) is None else v.to(device)) for f in fields(self)})

    @property
    def mask(self) -> torch.Tensor:
        return self.items > 0


@dataclass
class FeatureView:
    """Per-interaction features of the whole dataset, computed once (aligned with Sequences.items)."""

    intervals: np.ndarray  # (N,) float32
    freqs: np.ndarray  # (N,) int64 bucket ids

    @classmethod
    def build(cls, data: PreparedDataset, stats: FeatureStats) -> "FeatureView":
        seq = data.sequences
        dts = np.diff(seq.times, prepend=seq.times[:1]).astype(np.int64)
        intervals = stats.interval_feature(dts)
        intervals[seq.offsets[:-1][seq.lengths() > 0]] = 0.0  # first interaction of each user
        return cls(intervals=intervals, freqs=stats.frequency_bucket(seq.items))


def left_align(x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Roll each row of a left-padded (B, L) or (B, L, d) tensor so its n[b] real entries come first.

    A recurrent or causal encoder run on the rolled rows sees every history from step 0 with the
    padding after it, so outputs at real positions cannot depend on how much padding the batch added.
    """
    L = x.size(1)
    idx = (torch.arange(L, device=x.device) + (L - n)[:, None]) % L
    if x.dim() == 3:
        idx = idx.unsqueeze(-1).expand(-1, -1, x.size(2))
    return x.gather(1, idx)


def last_real(h: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """(B, L, d) outputs over left-aligned rows -> (B, d) output after each row's most recent item."""
    return h[torch.arange(h.size(0), device=h.device), (n - 1).clamp(min=0)]


def collate(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], users, targets=None) -> SeqBatch:
    """rows: (items, intervals, freqs) per user, chronological; left-padded to the longest row."""
    B = len(rows)
    L = max(1, max(len(r[0]) for r in rows))
    items = np.zeros((B, L), np.int64)
    intervals = np.zeros((B, L), np.float32)
    freqs = np.zeros((B, L), np.int64)
    tgt = np.zeros((B, L), np.int64) if targets is not None else None
    for b, (it, iv, fq) in enumerate(rows):
        n = len(it)
        if n:
            items[b, L - n :] = it
            intervals[b, L - n :] = iv
            freqs[b, L - n :] = fq
            if tgt is not None:
                tgt[b, L - n :] = targets[b]
    return SeqBatch(
        items=torch.from_numpy(items),
        intervals=torch.from_numpy(intervals),
        freqs=torch.from_numpy(freqs),
        lengths=torch.tensor([len(r[0]) for r in rows], dtype=torch.long),
        users=torch.as_tensor(np.asarray(users, dtype=np.int64)),
        targets=None if tgt is None else torch.from_numpy(tgt),
    )


class TrainBatches:
    """Every prefix of every training sequence: inputs s[:-1], targets s[1:].

    ``max_len`` truncates to the most recent ``max_len`` inputs (SASRec-style models); ``None`` keeps the
    whole history (recurrent models, whose streaming state also covers the whole history).
    ``token_budget`` bounds B * L per batch; ``batch_size`` bounds B. With ``bucket=False`` batches are
    consecutive ``batch_size`` users of a random permutation, lengths mixed and no budget applied.
    """

    def __init__(
        self,
        data: PreparedDataset,
        features: FeatureView,
        batch_size: int = 128,
        max_len: int | None = None,
        token_budget: int = 32_768,
        seed: int = 0,
        bucket: bool = True,
    ):
        self.data, self.features, self.bucket = data, features, bucket
        self.batch_size, self.max_len, self.token_budget = batch_size, max_len, token_budget
        self.rng = np.random.default_rng(seed)
        seq = data.sequences
        train_len = data.split.train_len
        self.users = np.flatnonzero(train_len >= 2)
        n_inputs = train_len[self.users] - 1
        self.n_inputs = n_inputs if max_len is None else np.minimum(n_inputs, max_len)
        self.offsets = seq.offsets

    @property
    def n_targets(self) -> int:
        return int(self.n_inputs.sum())

    def _batches(self) -> list[np.ndarray]:
        # shuffle, then sort within chunks by length (bucketing) and cut under the budget
        order = self.rng.permutation(len(self.users))
        if not self.bucket:
            return [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        chunk = self.batch_size * 50
        batches = []
        for s in range(0, len(order), chunk):
            idx = order[s : s + chunk]
            idx = idx[np.argsort(self.n_inputs[idx], kind="stable")]
            cur: list[int] = []
            longest = 0
            for i in idx:
                n = int(self.n_inputs[i])
                if cur and (len(cur) >= self.batch_size or max(longest, n) * (len(cur) + 1) > self.token_budget):
                    batches.append(np.asarray(cur))
                    cur, longest = [], 0
                cur.append(i)
                longest = max(longest, n)
            if cur:
                batches.append(np.asarray(cur))
        self.rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[SeqBatch]:
        items, f = self.data.sequences.items, self.features
        for batch_idx in self._batches():
            rows, targets, users = [], [], []
            for i in batch_idx:
                u = self.users[i]
                start = self.offsets[u]
                end = start + self.data.split.train_len[u]  # exclusive end of training interactions
                lo = end - 1 - int(self.n_inputs[i])
                rows.append((items[lo : end - 1], f.intervals[lo : end - 1], f.freqs[lo : end - 1]))
                targets.append(items[lo + 1 : end])
                users.append(u)
            yield collate(rows, users, targets)

    def __len__(self) -> int:
        return len(self._batches())


def eval_order(examples: np.ndarray) -> np.ndarray:
    """The order :func:`eval_batches` visits ``examples`` in: by history length, so padding stays small."""
    return np.argsort(examples[:, 1], kind="stable")


def eval_batches(
    data: PreparedDataset,
    features: FeatureView,
    examples: np.ndarray,
    batch_size: int = 256,
    max_len: int | None = None,
) -> Iterator[tuple[SeqBatch, np.ndarray, list[np.ndarray]]]:
    """Yield (batch of histories, target item per row, full history per row for seen-item filtering), the
    examples in the order of :func:`eval_order`."""
    seq = data.sequences
    order = eval_order(examples)
    for s in range(0, len(order), batch_size):
        rows, users, targets, seen = [], [], [], []
        for j in order[s : s + batch_size]:
            u, p = int(examples[j, 0]), int(examples[j, 1])
            start = seq.offsets[u]
            lo = start if max_len is None else max(start, start + p - max_len)
            end = start + p
            rows.append((seq.items[lo:end], features.intervals[lo:end], features.freqs[lo:end]))
            users.append(u)
            targets.append(seq.items[end])
            seen.append(seq.items[start:end])
        yield collate(rows, users), np.asarray(targets, dtype=np.int64), seen
