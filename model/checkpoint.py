"""Resumable training: after every epoch the trainer writes all that the next epoch depends on, so that a run
killed after hours (a CPU run on full ML-1M takes 4-5 hours per DiffLSRec seed here) continues from its last
finished epoch instead of from scratch, and ends with exactly the weights an uninterrupted run would have.

A checkpoint holds the weights (non-persistent buffers too: DiffRec's loss history steers its step
sampling), Adam's moments, the best-validation weights and score, the early-stopping count, the per-epoch
history and every random state a later epoch draws from (Python, NumPy, torch CPU and CUDA, and the batch
order's own generator). It is read back with ``torch.load(weights_only=True)``: tensors and plain values
only, nothing is unpickled. It is written to a temporary file and renamed, so a kill while writing leaves
the previous epoch's checkpoint whole.

A checkpoint belongs to one run: its fingerprint hashes the model and its configuration, the learning rate,
the data split and the training settings that shape the trajectory. Settings that only decide when to stop
(``epochs``, ``patience``, ``min_epochs``, ``max_minutes``) and how to run (device, progress display,
evaluation batch size) are left out, so a finished run can be continued with a larger patience or more
epochs, or on another device (bit-identical continuation needs the same device). A checkpoint of another run
is refused with a clear error rather than silently replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

FORMAT = 1

# TrainConfig fields that do not change what an epoch computes: a run may continue under other values
NOT_FINGERPRINTED = ("epochs", "patience", "min_epochs", "max_minutes", "progress", "device", "eval_batch_size")


class CheckpointError(RuntimeError):
    pass


@dataclass
class TrainingProgress:
    """Where a training run stands after ``epoch`` epochs (0: not started)."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    best_state: dict | None = None  # CPU copies of the best-validation weights
    stale: int = 0  # epochs since the best one
    history: list[dict] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training time of the invocations before this one


# model-config fields added after checkpoints were written, each at the value that computes what the model
# computed before it (oldest first). A checkpoint written before a field existed hashed a config without it, and
# one written by the code of 2026-12-07 left attention_sigmoid out at False: load accepts every such form
# (accepted_fingerprints), save writes the whole config. MARank's last_item_skip came first, off, and became
# the default later.
CONFIG_ADDED_LATER = {"marank": {"last_item_skip": False, "attention_sigmoid": False}}


def fingerprint(model, data_hash: str, cfg, lr: float) -> str:
    """The run's identity, written into its checkpoints: model, whole configuration, learning rate, data and
    the training settings that change what an epoch computes."""
    return _digest(model.name, dataclasses.asdict(model.config), data_hash, cfg, lr)


def accepted_fingerprints(model, data_hash: str, cfg, lr: float) -> set[str]:
    """:func:`fingerprint` and the fingerprints older code gave the same run: the configuration without any of
    the fields added later that are at their old value (every subset of them: which were left out depends on
    when the checkpoint was written)."""
    config = dataclasses.asdict(model.config)
    at_old_value = [k for k, old in CONFIG_ADDED_LATER.get(model.name, {}).items() if k in config and config[k] == old]
    accepted = set()
    for n in range(len(at_old_value) + 1):
        for left_out in itertools.combinations(at_old_value, n):
            accepted.add(_digest(model.name, {k: v for k, v in config.items() if k not in left_out}, data_hash, cfg, lr))
    return accepted


def _digest(name: str, config: dict, data_hash: str, cfg, lr: float) -> str:
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_FINGERPRINTED}
    what = {"model": name, "config": config, "lr": lr, "data": data_hash, "train": train}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def save(path: Path, fp: str, state: TrainingProgress, model: torch.nn.Module, opt: torch.optim.Optimizer, batch_rng: np.random.Generator) -> None:
    path = Path(path)
    persistent = model.state_dict()
    meta = {k: v for k, v in dataclasses.asdict(state).items() if k != "best_state"}
    payload = {
        "format": FORMAT,
        "fingerprint": fp,
        "model_name": model.name,  # for describe(): the fingerprint hashes the name but cannot be read back
        "progress": json.dumps(meta, default=float),  # metrics may be NumPy scalars: JSON keeps plain values
        "model": {k: v.detach().cpu() for k, v in persistent.items()},
        "buffers": {k: v.detach().cpu() for k, v in model.named_buffers() if k not in persistent},
        "best_state": state.best_state,
        "optimizer": opt.state_dict(),
        "rng": _rng_state(batch_rng),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def load(path: Path, accepted: set[str], model: torch.nn.Module, opt: torch.optim.Optimizer, batch_rng: np.random.Generator, accept=None) -> TrainingProgress | None:
    """Restore ``model``, ``opt``, the random states and ``batch_rng`` from ``path``; None when there is none.
    ``accepted``: every fingerprint the run accepts (:func:`accepted_fingerprints`).
    ``accept(progress)`` may refuse the run (raise) before anything is restored, so a caller that catches the
    refusal starts from its own weights."""
    path = Path(path)
    if not path.exists():
        return None
    payload = _read(path, "; delete it to train from scratch")
    if payload["fingerprint"] not in accepted:
        raise CheckpointError(
            f"{path} is the checkpoint of another run (another model, configuration, learning rate, data or training "
            f"setting); delete it, or point this run at another checkpoint path"
        )
    state = TrainingProgress(**json.loads(payload["progress"]), best_state=payload["best_state"])
    if accept is not None:
        accept(state)
    model.load_state_dict(payload["model"])
    for name, value in payload["buffers"].items():
        model.get_buffer(name).copy_(value)
    opt.load_state_dict(payload["optimizer"])
    _set_rng_state(payload["rng"], batch_rng)
    return state


def describe(path: Path) -> dict:
    """Where the run of the checkpoint at ``path`` stands, without a model to load it into: ``model`` (None
    in checkpoints written before 2026-12-06, which did not record it), ``epoch``, ``best_epoch``,
    ``best_score``, ``stale``, ``seconds`` and the per-epoch ``history``. Raises :class:`CheckpointError`."""
    return _described(_read(Path(path)))


def validation_curve(path: Path, metric: str = "NDCG@10") -> list[tuple[int, float]]:
    """(epoch, validation ``metric``) of every epoch the checkpoint at ``path`` recorded; [] when there is no
    checkpoint there or it cannot be read (a plot of many runs goes on without it)."""
    try:
        history = describe(path)["history"] if Path(path).is_file() else []
    except CheckpointError:
        return []
    return curve_of(history, metric)


def curve_of(history: list[dict], metric: str = "NDCG@10") -> list[tuple[int, float]]:
    """(epoch, validation ``metric``) of every epoch of a training history that has it."""
    return [(row["epoch"], row[f"valid_{metric}"]) for row in history if f"valid_{metric}" in row]


def best_weights(path: Path) -> tuple[dict | None, dict]:
    """The best-validation weights of the checkpoint at ``path`` (None before its first validation) and its
    :func:`describe`, from one read of the file. Raises :class:`CheckpointError`."""
    payload = _read(Path(path))
    return payload["best_state"], _described(payload)


def _described(payload: dict) -> dict:
    meta = json.loads(payload["progress"])
    keep = ("epoch", "best_epoch", "best_score", "stale", "seconds", "history")
    return {"model": payload.get("model_name"), "fingerprint": payload["fingerprint"], **{k: meta[k] for k in keep}}


def _read(path: Path, hint: str = "") -> dict:
    """The checkpoint's payload (tensors and plain values only: nothing is unpickled), format checked."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read the training checkpoint {path} ({e}){hint}") from e
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format')!r}, this version reads {FORMAT}{hint}")
    return payload


def _rng_state(batch_rng: np.random.Generator) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batches": json.dumps(batch_rng.bit_generator.state),
    }


def _set_rng_state(state: dict, batch_rng: np.random.Generator) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    batch_rng.bit_generator.state = json.loads(state["batches"])


def _tuples(x):
    """random.setstate wants the nested tuples getstate gave (a round trip may turn them into lists)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x
