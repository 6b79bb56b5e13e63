"""The recent history of every user a model was trained on, shipped inside its artifact (``histories.npz``).

A worker that meets a user for the first time (no state in its table) would otherwise start them from an
empty state: popularity lists until their first known item, and a long-term GRU state that holds only the
events seen since the worker started, which drops the long-term interest the model is built on. With these
histories the worker builds that user's state from their last interactions before the first event
(``stream.engine``, the same re-encoding as after a model change), so a deployed model serves the users it
was trained on from their first event.

Stored per user, oldest first: the last ``keep`` interactions of the prepared dataset (after k-core, so
items the model does not know are not there), as dense item ids of the artifact's vocabulary and times in
epoch seconds. npz of plain arrays, no pickle.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

FILE = "histories.npz"
DEFAULT_KEEP = 200  # the worker's default history_len: what it keeps per user


@dataclass(frozen=True)
class UserHistories:
    user_ids: np.ndarray  # (U,) str
    offsets: np.ndarray  # (U + 1,) int64: user u's interactions are [offsets[u], offsets[u + 1])
    items: np.ndarray  # (N,) int32 dense ids of the artifact's vocabulary, oldest first per user
    times: np.ndarray  # (N,) float64 epoch seconds

    @classmethod
    def from_sequences(cls, sequences, keep: int = DEFAULT_KEEP) -> UserHistories:
        """The last ``keep`` interactions of each user of a prepared dataset's ``Sequences``."""
        lengths = np.diff(sequences.offsets)
        kept = np.minimum(lengths, keep)
        offsets = np.concatenate(([0], np.cumsum(kept))).astype(np.int64)
        # index of each kept interaction: its user's end minus how far from the end it is
        ends = np.repeat(sequences.offsets[1:], kept)
        back = np.arange(offsets[-1]) - np.repeat(offsets[:-1], kept)
        take = ends - np.repeat(kept, kept) + back
        return cls(np.asarray(sequences.user_ids).astype(str), offsets, np.asarray(sequences.items)[take].astype(np.int32), np.asarray(sequences.times)[take].astype(np.float64))

    @cached_property
    def _row(self) -> dict[str, int]:
        return {user: row for row, user in enumerate(self.user_ids.tolist())}

    def __len__(self) -> int:
        return len(self.user_ids)

    def get(self, user_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(dense item ids, times) of ``user_id``'s stored history, or None for a user not in it."""
        row = self._row.get(user_id)
        if row is None:
            return None
        start, end = self.offsets[row], self.offsets[row + 1]
        return self.items[start:end], self.times[start:end]

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, user_ids=self.user_ids.astype(str), offsets=self.offsets, items=self.items, times=self.times)
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> UserHistories:
        with np.load(path, allow_pickle=False) as f:
            histories = cls(f["user_ids"], f["offsets"].astype(np.int64), f["items"].astype(np.int32), f["times"].astype(np.float64))
        n = len(histories.items)
        if len(histories.offsets) != len(histories.user_ids) + 1 or histories.offsets[0] != 0 or histories.offsets[-1] != n or len(histories.times) != n or (np.diff(histories.offsets) < 0).any():
            raise ValueError(f"{path}: user histories whose offsets do not match their arrays")
        return histories
