"""Raw interaction files -> :class:`PreparedDataset` (dedup, k-core, user subset, remap, split), cached.

Order of the steps, and why:

1. read (streaming, malformed lines counted; see formats.py), all files into one table;
2. drop exact duplicates (same user, item, timestamp), keeping the first in file order;
3. iterative k-core on users and items until stable (``kcore=0`` disables it);
4. optional subset of ``users`` users, drawn with ``seed`` among the users that passed the k-core (the paper
   samples user sequences from the filtered data), then the k-core again so the result is still a k-core
   (this second pass can leave fewer than ``users`` users, far fewer on sparse data: a warning below 90 %);
5. leave-one-out only: drop users with fewer than 3 interactions (only possible with ``kcore < 3``);
6. per-user chronological order, ties broken by file order; dense ids: users 0..U-1 and items 1..n_items
   (0 is padding), both in order of first appearance in the input;
7. split: ``loo`` or ``timeline`` (global time cuts at quantiles of all timestamps).

The result is saved as ``<cache_dir>/<hash>.npz``; the hash covers the sha256 of every input file's full
content (streamed), the resolved formats, every option and :data:`PREPARE_VERSION`, so a second call with
the same input and options loads the file instead of re-reading the input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from difflsrec.progress import progress
from difflsrec.settings import CommonSettings
from model.data.dataset import PAD_TOKEN, PreparedDataset, Sequences, Split
from model.data.formats import Interactions, ReadOptions, read_interactions, resolve_format

log = logging.getLogger(__name__)

PREPARE_VERSION = 1  # bump when the output of a step changes, to invalidate old caches
# What reading produced the cached arrays. Version 2 (2026-12-06) keeps sub-second times for ordering and dedup,
# strips a BOM and counts non-UTF-8 lines as malformed: files the old reader got wrong prepare differently,
# every other file (ML-1M, ml-100k, Ciao: checked array by array) to the same arrays. So an older cache file is
# rebuilt rather than the dataset's identity (PREPARE_VERSION, in every run and artifact hash) changed.
# Version 3 (2026-12-07) reads a seconds format whose times look like milliseconds as milliseconds (an Amazon
# 2023 ratings CSV without its header), the same kind of change.
READER_VERSION = 3
LOO_MIN_LENGTH = 3  # one training item, one validation target, one test target


@dataclass(frozen=True)
class PrepareOptions:
    read: ReadOptions = field(default_factory=ReadOptions)
    kcore: int = 5  # minimum interactions per user and per item; 0 = off
    users: int | None = None  # keep a random subset of this many users (None = all)
    seed: int = 0  # for the user subset
    split: Literal["loo", "timeline"] = "loo"
    timeline_cuts: tuple[float, float] = (0.8, 0.9)  # quantiles of all timestamps: valid, test cut

    def validate(self) -> None:
        if self.kcore < 0:
            raise ValueError(f"kcore must be >= 0, got {self.kcore}")
        if self.users is not None and self.users <= 0:
            raise ValueError(f"users must be positive, got {self.users}")
        if self.split not in ("loo", "timeline"):
            raise ValueError(f"split must be 'loo' or 'timeline', got {self.split!r}")
        lo, hi = self.timeline_cuts
        if not 0 < lo < hi < 1:  # cut1 == cut2 would leave no validation interactions
            raise ValueError(f"timeline_cuts must satisfy 0 < cut1 < cut2 < 1, got {self.timeline_cuts}")


# ---- entry point ----------------------------------------------------------------------------------
def prepare(
    inputs: Path | str | Sequence[Path | str],
    options: PrepareOptions | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> PreparedDataset:
    """Prepare (or load from the cache) the dataset made of ``inputs`` (one file or several, concatenated)."""
    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    options = options or PrepareOptions()
    options.validate()
    for path in paths:
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory: give the interaction file(s) in it")
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
    formats = [resolve_format(p, options.read.format) for p in paths]
    key = cache_key(paths, formats, options)
    target = Path(cache_dir or CommonSettings().cache_dir) / f"{key}.npz"
    if use_cache and target.exists():
        try:
            dataset = PreparedDataset.load(target)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a truncated or foreign file: rebuild it
            log.warning("cache %s unreadable (%s), rebuilding", target, err)
        else:
            if dataset.meta.get("reader_version", 1) >= READER_VERSION:
                check_split(dataset.split)  # a cache written before this check existed
                log.info("loaded prepared dataset from cache %s", target)
                # same content, possibly another path: describe this call's inputs
                dataset.meta.update(source=[str(p.resolve()) for p in paths], cache_path=str(target), from_cache=True)
                return dataset
            log.info("cache %s was read by an older reader, rebuilding", target)
    dataset = build(paths, formats, options)
    dataset.meta["hash"] = key
    dataset.meta["cache_path"] = str(target) if use_cache else None
    if use_cache:
        dataset.save(target)
        log.info("saved prepared dataset to %s", target)
    dataset.meta["from_cache"] = False  # after saving: this flag describes one call, not the file
    return dataset


def resolved_options(options: PrepareOptions, formats: list[str]) -> dict:
    """The options as JSON-safe dict, with ``format="auto"`` replaced by the detected format(s)."""
    resolved = json.loads(json.dumps(asdict(options)))
    resolved["read"]["format"] = formats[0] if len(set(formats)) == 1 else formats
    return resolved


def cache_key(paths: list[Path], formats: list[str], options: PrepareOptions) -> str:
    digest = hashlib.sha256()
    payload = {"version": PREPARE_VERSION, "options": resolved_options(options, formats)}
    if options.split == "loo" and 0 < options.kcore < LOO_MIN_LENGTH:
        # these preparations changed on 2026-12-07 (the k-core is kept after dropping users too short for
        # leave-one-out); every other one is as before, so only their hash moves, not PREPARE_VERSION's
        payload["loo_kcore"] = 2
    digest.update(json.dumps(payload, sort_keys=True).encode())
    for path in paths:
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Full-content sha256, streamed (about 1 s per GB; a progress bar appears for large files)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    bar = progress(total=size, unit="B", unit_scale=True, desc=f"hash {path.name}", delay=2.0, leave=False)
    with open(path, "rb") as f, bar:
        while block := f.read(chunk):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


# ---- the pipeline ---------------------------------------------------------------------------------
@dataclass
class Table:
    """Interactions being filtered: parallel arrays; ``order`` is the position in the input (tie-break)."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    order: np.ndarray

    def take(self, index: np.ndarray) -> "Table":
        return Table(self.users[index], self.items[index], self.times[index], self.order[index])

    def counts(self, step: str) -> dict:
        return {
            "step": step,
            "users": int(len(np.unique(self.users))),
            "items": int(len(np.unique(self.items))),
            "interactions": int(len(self.users)),
        }


def build(paths: list[Path], formats: list[str], options: PrepareOptions) -> PreparedDataset:
    raw, reports = read_interactions(paths, options.read, formats)
    table = Table(raw.users, raw.items, raw.times, np.arange(len(raw.users), dtype=np.int64))
    steps = [table.counts("read")]

    def record(step: str) -> None:
        steps.append(table.counts(step))
        log.info("%-22s %s", step, {k: v for k, v in steps[-1].items() if k != "step"})

    table = table.take(dedup_index(table.users, table.items, table.times))
    record("dedup")
    if options.kcore:
        table = table.take(kcore_index(table.users, table.items, options.kcore))
        record(f"kcore_{options.kcore}")
    if options.users is not None:
        chosen = sample_users(table.users, raw.user_vocab, options.users, options.seed)
        table = table.take(np.flatnonzero(np.isin(table.users, chosen)))
        record(f"subset_{options.users}_seed_{options.seed}")
        if options.kcore:
            table = table.take(kcore_index(table.users, table.items, options.kcore))
            record(f"kcore_{options.kcore}_after_subset")
            kept, asked = steps[-1]["users"], min(options.users, steps[-2]["users"])
            if kept < 0.9 * asked:  # the subset's items lose support when most users are left out: sparse data
                log.warning(
                    "--users %d: the %d-core pass after the subset kept %d of the %d users drawn (%.0f%%); on data this "
                    "sparse, draw more users (or lower --kcore) to end up with about %d", options.users, options.kcore,
                    kept, asked, 100 * kept / max(asked, 1), options.users,
                )
    if options.split == "loo":
        counts = np.bincount(table.users)
        short = int(np.count_nonzero((counts > 0) & (counts < LOO_MIN_LENGTH)))
        if short:
            log.warning("leave-one-out: dropping %d users with fewer than %d interactions", short, LOO_MIN_LENGTH)
            # with a k-core (only k < 3 gets here) dropping users can take items below k, so it is taken again with
            # users of at least 3; with none (k = 0) this is the plain drop of the short users
            table = table.take(kcore_index(table.users, table.items, options.kcore, user_min=LOO_MIN_LENGTH))
            record("loo_min_length")
    if len(table.users) == 0:
        raise ValueError(f"no interactions left after preprocessing {[str(p) for p in paths]}: steps {steps}")

    sequences = to_sequences(table, raw)
    split = leave_one_out(sequences) if options.split == "loo" else timeline_split(sequences, options.timeline_cuts)
    check_split(split)
    meta = {
        "source": [str(p.resolve()) for p in paths],
        "format": formats[0] if len(set(formats)) == 1 else formats,
        "options": resolved_options(options, formats),
        "n_users": sequences.n_users,
        "n_items": sequences.n_items,
        "n_interactions": sequences.n_interactions,
        "malformed": [r.to_dict() for r in reports],
        "steps": steps,
        "prepare_version": PREPARE_VERSION,
        "reader_version": READER_VERSION,
        "hash_method": "sha256(options json + sha256 of each input file's full content)",
    }
    return PreparedDataset(sequences=sequences, split=split, meta=meta)


def check_split(split: Split) -> None:
    """Refuse a split with no training interactions, or no validation or test examples: every model would
    "train" and report 0.0 on it, which reads like a result."""
    empty = [name for name, n in (("training interactions", int(split.train_len.sum())), ("validation examples", len(split.valid)), ("test examples", len(split.test))) if n == 0]
    if not empty:
        return
    hint = ""
    if split.name == "timeline":
        cuts = split.info.get("cut_timestamps")
        where = f" The timeline cuts fell at {cuts} (quantiles {split.info.get('cut_quantiles')})"
        if not cuts or len(set(cuts)) < len(cuts) or "training interactions" in empty:
            hint = f"{where}: with many equal timestamps the quantiles coincide; try other --timeline-cuts or --split loo."
        else:  # distinct cuts with data before them: no user is active on both sides of a cut
            hint = (f"{where}: an example needs a user with interactions before a cut and after it, and no user has them "
                    "(users active in separate periods); try other --timeline-cuts or --split loo.")
    raise ValueError(f"the {split.name} split has no {' and no '.join(empty)}.{hint}")


def dedup_index(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows to keep: the first (in input order) of each (user, item, time)."""
    order = np.lexsort((np.arange(len(users)), times, items, users))
    u, i, t = users[order], items[order], times[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (u[1:] == u[:-1]) & (i[1:] == i[:-1]) & (t[1:] == t[:-1])
    return np.sort(order[~repeat])


def kcore_index(users: np.ndarray, items: np.ndarray, k: int, user_min: int = 0) -> np.ndarray:
    """Indices of the rows in the k-core: every kept user and item has >= k kept rows (users at least
    ``user_min`` too).

    Removing a sparse item can push a user below k and vice versa, so repeat until nothing changes.
    """
    index = np.arange(len(users))
    rounds = 0
    per_user = max(k, user_min)
    while True:
        u, i = users[index], items[index]
        keep = (np.bincount(u)[u] >= per_user) & (np.bincount(i)[i] >= k)
        rounds += 1
        if keep.all():
            log.debug("%d-core stable after %d rounds", k, rounds)
            return index
        index = index[keep]


def sample_users(users: np.ndarray, user_vocab: list[str], n: int, seed: int) -> np.ndarray:
    """User codes of a reproducible random subset of size n (all users when there are no more than n).

    Candidates are ordered by raw id before drawing, so the subset depends on the seed and the set of
    users, not on the order of lines in the file.
    """
    candidates = np.unique(users)
    if n >= len(candidates):
        log.info("subset of %d users requested, only %d available: keeping all", n, len(candidates))
        return candidates
    raw_ids = np.array([user_vocab[c] for c in candidates])
    by_raw_id = candidates[np.argsort(raw_ids, kind="stable")]
    picked = np.random.default_rng(seed).choice(len(by_raw_id), size=n, replace=False)
    return np.sort(by_raw_id[picked])


def to_sequences(table: Table, raw: Interactions) -> Sequences:
    """Chronological per-user sequences with dense ids, ties in time kept in input order."""
    order = np.lexsort((table.order, table.times, table.users))
    users, items, times = table.users[order], table.items[order], table.times[order]
    # input codes were given in order of first appearance, so sorted codes keep that order
    user_codes, dense_users = np.unique(users, return_inverse=True)
    item_codes, dense_items = np.unique(items, return_inverse=True)
    offsets = np.zeros(len(user_codes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(dense_users, minlength=len(user_codes)), out=offsets[1:])
    return Sequences(
        user_ids=np.array([raw.user_vocab[c] for c in user_codes], dtype=str),
        item_ids=np.array([PAD_TOKEN] + [raw.item_vocab[c] for c in item_codes], dtype=str),
        offsets=offsets,
        items=dense_items.astype(np.int64) + 1,
        times=np.floor(times).astype(np.int64),  # whole seconds (the reader keeps sub-seconds for ordering only)
    )


# ---- splits ---------------------------------------------------------------------------------------
def leave_one_out(seq: Sequences) -> Split:
    """Last item = test, second-to-last = validation, the rest trains (needs >= 3 per user)."""
    lengths = seq.lengths()
    if len(lengths) and lengths.min() < LOO_MIN_LENGTH:
        raise ValueError(f"leave-one-out needs >= {LOO_MIN_LENGTH} interactions per user, min is {lengths.min()}")
    users = np.arange(seq.n_users, dtype=np.int64)
    return Split(
        name="loo",
        train_len=lengths - 2,
        valid=np.column_stack([users, lengths - 2]).astype(np.int64),
        test=np.column_stack([users, lengths - 1]).astype(np.int64),
        info={},
    )


def timeline_split(seq: Sequences, cuts: tuple[float, float] = (0.8, 0.9)) -> Split:
    """Global time cuts at quantiles of all timestamps.

    Train: interactions before cut1. Valid: a user's first interaction in [cut1, cut2), if the user has a
    training interaction. Test: a user's first interaction at or after cut2, if it has any earlier one.
    Cuts are rounded up to whole seconds, which for integer times is the same as comparing to the quantile.
    """
    cut1, cut2 = (int(np.ceil(c)) for c in np.quantile(seq.times, cuts))
    lengths = seq.lengths()
    owner = np.repeat(np.arange(seq.n_users), lengths)
    # sequences are chronological, so "before the cut" is a prefix of each user's sequence
    before1 = np.bincount(owner[seq.times < cut1], minlength=seq.n_users).astype(np.int64)
    before2 = np.bincount(owner[seq.times < cut2], minlength=seq.n_users).astype(np.int64)
    has_valid = (before1 >= 1) & (before1 < before2)
    has_test = (before2 >= 1) & (before2 < lengths)
    valid_users, test_users = np.flatnonzero(has_valid), np.flatnonzero(has_test)
    return Split(
        name="timeline",
        train_len=before1,
        valid=np.column_stack([valid_users, before1[valid_users]]).astype(np.int64),
        test=np.column_stack([test_users, before2[test_users]]).astype(np.int64),
        info={"cut_quantiles": list(cuts), "cut_timestamps": [cut1, cut2]},
    )


def tied_target_share(dataset: PreparedDataset, targets: np.ndarray) -> float:
    """Share of evaluation targets ``(u, p)`` whose timestamp equals that of the interaction before them.

    For those the order of the two, and so which item is the target, was decided by the tie-break (input
    file order), not by time: MovieLens stores seconds and users rate in bursts (42 % of ML-1M test targets
    share their second with the validation item); Amazon 2014/2018 files store days. On ML-1M, reversing or
    shuffling the ties moved SASRec-CE's early validation scores but not its final test numbers (README).
    """
    seq = dataset.sequences
    rows = targets[targets[:, 1] > 0]
    if len(rows) == 0:
        return 0.0
    at = seq.offsets[rows[:, 0]] + rows[:, 1]
    return float(np.mean(seq.times[at] == seq.times[at - 1]))


def tied_targets_sentence(share: float) -> str:
    """The line reports print under their dataset description."""
    return (
        f"{share:.0%} of the test targets share their timestamp with the interaction before them: their order, and so "
        "which item is the target, is the input file's (see `model.data.prepare.tied_target_share`)."
    )


def summary(dataset: PreparedDataset) -> dict:
    """Headline numbers for logs and the CLI."""
    seq, split = dataset.sequences, dataset.split
    return {
        "users": seq.n_users,
        "items": seq.n_items,
        "interactions": seq.n_interactions,
        "density": seq.n_interactions / max(1, seq.n_users * seq.n_items),
        "avg_length": seq.n_interactions / max(1, seq.n_users),
        "split": split.name,
        "train_interactions": int(split.train_len.sum()),
        "valid_examples": len(split.valid),
        "test_examples": len(split.test),
        "test_targets_tied_in_time": tied_target_share(dataset, split.test),
    }
