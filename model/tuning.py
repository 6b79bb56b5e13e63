"""Hyper-parameter search on validation, with the same budget for every model.

Each model class may declare ``search_space`` (hyper-parameter -> candidate values). ``tune`` draws
``trials`` distinct configurations at random (seeded; the model's defaults are always the first trial),
trains each for the same short budget and keeps the one with the best validation NDCG@10. The test split
is never looked at. Models without a search space (Pop) get a single trial.

A short budget ranks configurations by how fast they learn, not by where they end (on ml-100k MARank's
trials sit within 0.002 of each other after 10 epochs and its chosen run peaks at epoch 82). ``rungs`` > 1
runs successive halving instead: every configuration trains for the budget, the better half (rounded up)
goes on to twice the epochs, and so on for ``rungs`` rungs, each trial continuing from its own checkpoint
(model/checkpoint.py), so a rung costs only its new epochs and ends where one uninterrupted run of that
length would. The choice is the best trial of the last rung.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from model.batching import FeatureView
from model.checkpoint import validation_curve
from model.data.dataset import PreparedDataset
from model.features import FeatureStats
from model.registry import build, get, make_config
from model.training import TrainConfig, recorded_result, seed_everything, train, train_discarding_foreign

log = logging.getLogger(__name__)


@dataclass
class Trial:
    overrides: dict
    valid: dict[str, float]
    best_epoch: int
    seconds: float  # training time of this configuration, all rungs
    epochs: int = 0  # epochs trained (fewer than the rung's budget when early stopping ended it)
    rung: int = 0  # the last rung it reached (0: the first budget)


def candidates(name: str, trials: int, seed: int, fixed: dict | None = None) -> list[dict]:
    """Up to ``trials`` distinct override sets from the model's search space; keys in ``fixed`` (the user's
    own --set values) are not searched. The defaults come first."""
    fixed = fixed or {}
    space = {k: v for k, v in getattr(get(name), "search_space", {}).items() if k not in fixed}
    grid = [dict(zip(space, values)) for values in itertools.product(*space.values())] if space else [{}]
    rng = random.Random(seed)
    rng.shuffle(grid)
    defaults = make_config(name, fixed)
    # {} = the model's defaults; a grid point that spells them out again would spend a trial on the same model
    picked = [{}] + [g for g in grid if g and make_config(name, {**fixed, **g}) != defaults]
    return picked[: max(1, trials)]


def tune(
    name: str, data: PreparedDataset, stats: FeatureStats, features: FeatureView, trials: int, train_cfg: TrainConfig, fixed: dict | None = None,
    metric: str = "NDCG@10", rungs: int = 1, checkpoints: Path | None = None,
) -> tuple[dict, list[Trial]]:
    """Returns (best overrides, every trial, each as far as it got). ``train_cfg`` is the first rung's budget
    per configuration (epochs, patience). ``checkpoints``: a folder for the trials' training states (kept, so
    an interrupted search goes on where it stopped); with ``rungs`` > 1 and none given, a temporary one."""
    if rungs < 1:
        raise ValueError(f"rungs must be at least 1, got {rungs}")
    fixed = fixed or {}
    configs = candidates(name, trials, train_cfg.seed, fixed)
    results: list[Trial | None] = [None] * len(configs)
    with contextlib.ExitStack() as stack:
        if checkpoints is None and rungs > 1:
            checkpoints = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="difflsrec-tune-")))
        alive = list(range(len(configs)))
        for rung in range(rungs):
            budget = dataclasses.replace(train_cfg, epochs=train_cfg.epochs * 2**rung, progress=False)
            for i in alive:
                results[i] = _trial(name, data, stats, features, fixed, configs[i], budget, rung, checkpoints)
                log.info("tune %s %s (rung %d, %d epochs): valid %s %.4f", name, json.dumps(configs[i]), rung, results[i].epochs, metric, results[i].valid.get(metric, 0.0))
            if rung == rungs - 1 or len(alive) == 1:
                break
            # sorted() is stable: on a tie the earlier trial (the defaults first) goes on
            alive = sorted(alive, key=lambda i: -results[i].valid.get(metric, 0.0))[: math.ceil(len(alive) / 2)]
    best = max((results[i] for i in alive), key=lambda t: t.valid.get(metric, 0.0))
    return {**fixed, **best.overrides}, [t for t in results if t is not None]


def trial_checkpoint(folder: Path, name: str, fixed: dict, overrides: dict) -> Path:
    """Where a trial keeps its training state: one file per model and configuration, so each rung continues it."""
    digest = hashlib.sha256(json.dumps({**fixed, **overrides}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(folder) / f"{name}-{digest}.pt"


def _trial(name, data, stats, features, fixed: dict, overrides: dict, budget: TrainConfig, rung: int, folder: Path | None) -> Trial:
    """Train one configuration up to ``budget.epochs`` (continuing its checkpoint in ``folder``, if any)."""
    checkpoint = None if folder is None else trial_checkpoint(folder, name, fixed, overrides)

    seed_everything(budget.seed)
    model = build(name, data.sequences.n_items, stats, {**fixed, **overrides})
    if checkpoint is None:
        r = train(model, data, stats, budget, features)
    else:
        # a search resumed after an interruption in a later rung: this rung's result is in the trial's history
        # (training would refuse the checkpoint as past this rung's stop, and discard it with the later rungs)
        r = recorded_result(model, data, budget, checkpoint, features)
        if r is None:  # another search's state under this name (other training settings) is discarded
            r = train_discarding_foreign(model, data, stats, budget, features, checkpoint)
    return Trial(overrides, r.best_valid, r.best_epoch, r.train_seconds, r.epochs_run, rung)


def search_curves(name: str, tuning: dict, fixed: dict, folder: Path) -> list[dict]:
    """Validation NDCG@10 per epoch of every trial of a recorded search (``tuning``: the record
    ``benchmark`` keeps in ``OUT/tuning/NAME.json``), read from the trials' checkpoints in ``folder``;
    trials without one are left out."""
    chosen = {k: v for k, v in tuning["chosen"].items() if k not in fixed}  # a trial's overrides never hold a fixed key
    curves = []
    for trial in tuning["trials"]:
        points = validation_curve(trial_checkpoint(folder, name, fixed, trial["overrides"]))
        if points:
            label = ", ".join(f"{k} {v}" for k, v in trial["overrides"].items()) or "defaults"
            curves.append({"label": label, "points": points, "chosen": trial["overrides"] == chosen, "rung": trial.get("rung", 0)})
    return curves


def plot_searches(panels: dict[str, dict], path: Path) -> None:
    """One panel per model: every trial's validation curve (the chosen one in colour, the others grey, thinner
    the earlier they were dropped), the rung budgets as vertical lines and, dashed, the chosen configuration's
    final run. ``panels``: name -> {"curves": search_curves(...), "rungs": [epoch budgets], "final": points}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(panels)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, panel) in zip(axes.flat, panels.items()):
        top = max((c["rung"] for c in panel["curves"]), default=0)
        for c in sorted(panel["curves"], key=lambda c: c["chosen"]):  # the chosen one drawn last, on top
            epochs, values = zip(*c["points"])
            if c["chosen"]:
                ax.plot(epochs, values, color="tab:red", linewidth=2, label=f"chosen: {c['label']}")
            else:
                ax.plot(epochs, values, color="grey", alpha=0.7, linewidth=0.6 + 0.9 * c["rung"] / max(1, top))
        if panel.get("final"):
            epochs, values = zip(*panel["final"])
            ax.plot(epochs, values, color="black", linestyle="--", linewidth=1, label="chosen, final run")
        for budget in panel["rungs"]:
            ax.axvline(budget, color="tab:blue", linestyle=":", linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Tuning on validation: every trial (grey), rung budgets (dotted)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
