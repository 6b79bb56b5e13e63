"""Hyper-parameter search on validation, with the same budget for every model.

Each model class may declare ``search_space`` (hyper-parameter -> candidate values). ``tune`` draws
``trials`` distinct configurations at random (seeded; the model's defaults are always the first trial),
trains each for the same short budget and keeps the one with the best validation NDCG@10. The test split
is never looked at. Models without a search space (Pop) get a single trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import random
from dataclasses import dataclass

from model.batching import FeatureView
from model.data.dataset import PreparedDataset
from model.features import FeatureStats
from model.registry import build, get, make_config
from model.training import TrainConfig, seed_everything, train

log = logging.getLogger(__name__)


@dataclass
class Trial:
    overrides: dict
    valid: dict[str, float]
    best_epoch: int
    seconds: float


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


def tune(name: str, data: PreparedDataset, stats: FeatureStats, features: FeatureView, trials: int, train_cfg: TrainConfig, fixed: dict | None = None, metric: str = "NDCG@10") -> tuple[dict, list[Trial]]:
    """Returns (best overrides, every trial). ``train_cfg`` is the per-trial budget (epochs / minutes)."""
    fixed = fixed or {}
    results = []
    for overrides in candidates(name, trials, train_cfg.seed, fixed):
        seed_everything(train_cfg.seed)
        model = build(name, data.sequences.n_items, stats, {**fixed, **overrides})
        r = train(model, data, stats, dataclasses.replace(train_cfg, progress=False), features)
        results.append(Trial(overrides, r.best_valid, r.best_epoch, r.train_seconds))
        log.info("tune %s %s: valid %s %.4f", name, json.dumps(overrides), metric, r.best_valid.get(metric, 0.0))
    best = max(results, key=lambda t: t.valid.get(metric, 0.0))
    return {**fixed, **best.overrides}, results
