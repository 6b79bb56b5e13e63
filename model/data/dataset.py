"""The prepared-dataset contract between data preparation and everything downstream.

Sequences are stored CSR-style: user ``u`` owns ``items[offsets[u]:offsets[u+1]]`` (dense item ids,
1..n_items, 0 is padding) with their ``times`` (epoch seconds), in chronological order with a stable
tie-break. A :class:`Split` says, per user, how many leading interactions are training data and which
positions are validation / test targets; an evaluation example ``(u, p)`` means "predict
``items[offsets[u] + p]`` from the history ``items[offsets[u] : offsets[u] + p]``".
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PAD = 0
PAD_TOKEN = "<pad>"


@dataclass
class Sequences:
    user_ids: np.ndarray  # (U,) str: raw user id of dense user u
    item_ids: np.ndarray  # (n_items + 1,) str: raw item id of dense item i; item_ids[0] == PAD_TOKEN
    offsets: np.ndarray  # (U + 1,) int64
    items: np.ndarray  # (N,) int64 in 1..n_items
    times: np.ndarray  # (N,) int64 epoch seconds

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of real items (padding excluded)."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def user_items(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def user_times(self, u: int) -> np.ndarray:
        return self.times[self.offsets[u] : self.offsets[u + 1]]


@dataclass
class Split:
    """Which interactions train the model and which are evaluation targets.

    ``train_len[u]``: the first ``train_len[u]`` interactions of user u are training data.
    ``valid`` / ``test``: int64 arrays of shape (n, 2) with rows ``(u, p)``: target position p of user u,
    history = positions ``< p``. Leave-one-out: valid p = L-2, test p = L-1, train_len = L-2.
    """

    name: str
    train_len: np.ndarray  # (U,) int64
    valid: np.ndarray  # (n_valid, 2) int64
    test: np.ndarray  # (n_test, 2) int64
    info: dict = field(default_factory=dict)  # e.g. cut timestamps of a timeline split


@dataclass
class PreparedDataset:
    sequences: Sequences
    split: Split
    meta: dict  # source path(s), format, options, counts, malformed-line report, 'hash'

    @property
    def hash(self) -> str:
        return self.meta["hash"]

    @property
    def content_hash(self) -> str:
        """sha256 of what the models see: sequences (raw ids, items, times) and the split, whatever file
        bytes and options produced them. ``hash`` keys the cache by input bytes and options, so the same
        ratings gzipped, or options that happen to change nothing, give another ``hash`` but this value."""
        seq, split = self.sequences, self.split
        digest = hashlib.sha256()
        for ids in (seq.user_ids, seq.item_ids):
            digest.update("\x1f".join(map(str, ids)).encode() + b"\x1e")
        for name, array in (("offsets", seq.offsets), ("items", seq.items), ("times", seq.times), ("train_len", split.train_len), ("valid", split.valid), ("test", split.test)):
            digest.update(name.encode() + np.ascontiguousarray(array, dtype=np.int64).tobytes())
        digest.update(split.name.encode())
        return digest.hexdigest()

    # ---- training views -------------------------------------------------------------------------
    def train_mask(self) -> np.ndarray:
        """(N,) bool: True where the interaction belongs to training data (used to fit statistics)."""
        seq = self.sequences
        pos = np.arange(seq.n_interactions) - np.repeat(seq.offsets[:-1], seq.lengths())
        return pos < np.repeat(self.split.train_len, seq.lengths())

    # ---- persistence (npz + json, no pickle) ------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        seq, sp = self.sequences, self.split
        # a name of this process's own: several processes preparing the same dataset at once (parallel
        # benchmark runs) each write their copy and the last rename wins, instead of renaming each other's
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npz")
        np.savez_compressed(
            tmp,
            user_ids=seq.user_ids.astype(str),
            item_ids=seq.item_ids.astype(str),
            offsets=seq.offsets,
            items=seq.items,
            times=seq.times,
            train_len=sp.train_len,
            valid=sp.valid,
            test=sp.test,
            split_name=np.array(sp.name),
            split_info=np.array(json.dumps(sp.info)),
            meta=np.array(json.dumps(self.meta)),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "PreparedDataset":
        with np.load(Path(path), allow_pickle=False) as z:
            seq = Sequences(
                user_ids=z["user_ids"],
                item_ids=z["item_ids"],
                offsets=z["offsets"].astype(np.int64),
                items=z["items"].astype(np.int64),
                times=z["times"].astype(np.int64),
            )
            split = Split(
                name=str(z["split_name"]),
                train_len=z["train_len"].astype(np.int64),
                valid=z["valid"].astype(np.int64).reshape(-1, 2),
                test=z["test"].astype(np.int64).reshape(-1, 2),
                info=json.loads(str(z["split_info"])),
            )
            meta = json.loads(str(z["meta"]))
        return cls(sequences=seq, split=split, meta=meta)
