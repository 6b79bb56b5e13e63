"""Shared pieces of the stream tests: a tiny trained artifact, the offline reference, event streams."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from model.artifact import Artifact, load_artifact, save_artifact
from model.batching import collate
from model.histories import UserHistories
from model.registry import build
from model.training import TrainConfig, train
from stream.engine import SourcedEvent
from stream.schemas import InteractionEvent
from tests.model.toy import toy_dataset, toy_stats

TINY = {"d": 16, "short_len": 4, "n_tokens": 3, "T": 10, "denoiser_hidden": 32}
N_ITEMS = 30


def build_tiny_artifact(path: Path, seed: int = 0, epochs: int = 2, histories: bool = False) -> Path:
    """A real trained DiffLSRec artifact (30 items "i1".."i30", d=16): seconds on a CPU. Its 16 users are
    "u0".."u15", as make_events' are; with ``histories`` their histories go into it, and a worker starts
    those users from them (off by default: most tests follow a user's state from empty)."""
    data = toy_dataset(n_users=16, n_items=N_ITEMS, min_len=5, max_len=14, seed=seed, pattern=True)
    stats = toy_stats(data)
    torch.manual_seed(seed)
    model = build("difflsrec", data.sequences.n_items, stats, TINY)
    train(model, data, stats, TrainConfig(epochs=epochs, progress=False, device="cpu", seed=seed))
    save_artifact(path, model, stats, data.sequences.item_ids, data_hash=data.hash, split="loo", histories=UserHistories.from_sequences(data.sequences) if histories else None)
    return path


def as_sourced(events: list[dict], start_offset: int = 0, partition: int = 0, topic: str = "interactions") -> list[SourcedEvent]:
    """Events as the engine receives them: validated, at consecutive offsets of one partition."""
    return [SourcedEvent(InteractionEvent.model_validate(e), topic, partition, start_offset + k, 0) for k, e in enumerate(events)]


def offline_top_n(artifact: Artifact, items: list[str], times: list[float], n: int = 10, exclude_seen: bool = True) -> tuple[list[str], np.ndarray]:
    """The offline evaluation path on one history: ``model.score`` (encode_long over the whole history,
    fuse on the last window, dot products with every item), seen items removed, top ``n``."""
    model, stats = artifact.model.eval(), artifact.stats
    index_of = artifact.item_index_of()
    dense = np.array([index_of.get(i, 0) for i in items], dtype=np.int64)
    known = dense > 0
    t = np.asarray(times, dtype=np.float64)
    intervals = stats.interval_feature(np.abs(np.diff(t, prepend=t[:1])))
    intervals[:1] = 0.0
    # unknown items are masked like padding (the worker cannot embed them either)
    batch = collate([(dense, intervals, stats.frequency_bucket(dense))], [0])
    with torch.no_grad():
        scores = model.score(batch)[0].clone()
    scores[0] = float("-inf")
    if exclude_seen:
        scores[torch.as_tensor(dense[known])] = float("-inf")
    top = torch.topk(scores, n)
    return [artifact.item_ids[i] for i in top.indices.tolist()], top.values.numpy()


@dataclass
class UserStream:
    """The events produced for one user, in order: what the worker's final state must reflect."""

    user: str
    items: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


def make_events(n_users: int, per_user: int, seed: int = 0, unknown_every: int = 0, unknown_users: int | None = None, prefix: str = "u") -> list[dict]:
    """Interleaved events of ``n_users`` users, ``per_user`` each, increasing times per user; every
    ``unknown_every``-th event (if > 0) of the first ``unknown_users`` users (default all) has an item
    outside the vocabulary."""
    rng = np.random.default_rng(seed)
    events = []
    clock = {u: 1_000_000_000 + 1000 * u for u in range(n_users)}
    for k in range(per_user):
        for u in rng.permutation(n_users).tolist():
            clock[u] += int(rng.integers(30, 5000))
            unknown = unknown_every and (k + 1) % unknown_every == 0 and u < (n_users if unknown_users is None else unknown_users)
            item = f"new-{u}-{k}" if unknown else f"i{int(rng.integers(1, N_ITEMS + 1))}"
            events.append({"user_id": f"{prefix}{u}", "item_id": item, "timestamp": clock[u], "event_id": f"{prefix}{u}-e{k}"})
    return events


def streams_of(events: list[dict]) -> dict[str, UserStream]:
    out: dict[str, UserStream] = {}
    for e in events:
        s = out.setdefault(e["user_id"], UserStream(e["user_id"]))
        s.items.append(e["item_id"])
        s.times.append(float(e["timestamp"]))
        s.event_ids.append(e["event_id"])
    return out


def offline_state(artifact: Artifact, items: list[str], times: list[float]) -> np.ndarray:
    """h after the whole history, by the offline encoder (unknown items masked)."""
    model, stats = artifact.model.eval(), artifact.stats
    index_of = artifact.item_index_of()
    dense = np.array([index_of.get(i, 0) for i in items], dtype=np.int64)
    t = np.asarray(times, dtype=np.float64)
    intervals = stats.interval_feature(np.abs(np.diff(t, prepend=t[:1])))
    intervals[:1] = 0.0
    with torch.no_grad():
        return model.encode_long(collate([(dense, intervals, stats.frequency_bucket(dense))], [0]))[0, -1].numpy()


def load(path: Path) -> Artifact:
    return load_artifact(path)


REPO = Path(__file__).resolve().parents[2]


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (reaped here if it was a child of this process; a zombie counts as gone)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def assert_child_dies_with_owner(
    owner_code: str, ready: Path, child: str, start_timeout: float = 120.0, stop_timeout: float = 60.0, running: Callable[[], bool] | None = None,
) -> None:
    """Run ``owner_code`` in a fresh Python (the repo as working dir): it starts ``child`` (a broker, a
    worker) and writes the child's pid into ``ready``. Then SIGKILL the owner, which cleans nothing up: the
    child must be gone within ``stop_timeout`` seconds. ``running``: a check that the child runs, asserted
    before the kill (beside its pid being alive)."""
    owner = subprocess.Popen([sys.executable, "-c", owner_code], cwd=REPO)
    pid = None
    try:
        deadline = time.monotonic() + start_timeout
        while not ready.exists() or not ready.read_text():
            assert owner.poll() is None and time.monotonic() < deadline, f"the owner could not start its {child}"
            time.sleep(0.2)
        pid = int(ready.read_text())
        assert not process_gone(pid)
        if running is not None:
            assert running()
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + stop_timeout
        while not process_gone(pid):
            assert time.monotonic() < deadline, f"the {child} outlived its owner"
            time.sleep(0.2)
    finally:
        owner.kill()
        if pid is not None and not process_gone(pid):
            os.kill(pid, 9)
