"""A finished training run (:class:`model.benchmark.ModelRun`) as one ``.npz`` file, nothing pickled.

``reproduce`` keeps every run it trains in ``DIR/runs/<id>.npz`` and reads them back on the next
invocation, so these files may come from anywhere a user copies a results folder from: they are read
with ``allow_pickle=False`` like every other file this project loads. Arrays (each test example's user,
the target's rank and every per-example metric, for the full and the sampled protocol) are stored as
arrays; everything else (validation scores, epochs, seconds, configuration, per-epoch history) as one
JSON document in the ``meta`` entry.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from difflsrec.files import write_atomic
from model.benchmark import ModelRun
from model.evaluation import EvalResult

FORMAT = 1
SUFFIX = ".npz"


class RunFileError(ValueError):
    """A run file this code cannot read (corrupt, or written by an incompatible version)."""


def save_run(run: ModelRun, path: Path) -> None:
    """Write ``run`` to ``path`` atomically: a reader never sees half a file."""
    arrays: dict[str, np.ndarray] = {}
    _put(arrays, "test", run.test)
    if run.test_sampled is not None:
        _put(arrays, "test_sampled", run.test_sampled)
    meta = {
        "format": FORMAT, "model": run.model, "seed": run.seed, "valid": run.valid, "best_epoch": run.best_epoch, "epochs": run.epochs,
        "train_seconds": run.train_seconds, "epoch_seconds": run.epoch_seconds, "config": run.config, "history": run.history,
        "metrics": {part: list(result.per_example) for part, result in (("test", run.test), ("test_sampled", run.test_sampled)) if result is not None},
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_plain).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_run(path: Path) -> ModelRun:
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            known = meta.get("format") == FORMAT
            results = {part: _get(z, part, names) for part, names in meta["metrics"].items()} if known else {}
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as error:  # JSON errors are ValueErrors
        raise RunFileError(f"{path}: not a readable run file ({type(error).__name__}: {error})") from error
    if not known:
        raise RunFileError(f"{path}: run file format {meta.get('format')!r}, this code reads {FORMAT}")
    return ModelRun(
        meta["model"], meta["seed"], results["test"], meta["valid"], meta["best_epoch"], meta["epochs"], meta["train_seconds"],
        meta["epoch_seconds"], meta["config"], meta["history"], results.get("test_sampled"),
    )


def _plain(value):
    """JSON for the numpy values a history or configuration may hold (np.float32 scores, arrays)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a run file")


def _put(arrays: dict[str, np.ndarray], part: str, result: EvalResult) -> None:
    arrays[f"{part}.users"] = np.asarray(result.users)
    arrays[f"{part}.ranks"] = np.asarray(result.ranks)
    for i, values in enumerate(result.per_example.values()):  # metric names (HR@10 ...) stay in meta, not in zip names
        arrays[f"{part}.metric{i}"] = np.asarray(values)


def _get(z, part: str, names: list[str]) -> EvalResult:
    return EvalResult(z[f"{part}.users"], z[f"{part}.ranks"], {name: z[f"{part}.metric{i}"] for i, name in enumerate(names)})
