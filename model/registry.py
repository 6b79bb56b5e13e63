"""The model registry: every recommender (DiffLSRec and each baseline) is one module that registers one
:class:`Recommender` subclass with a config dataclass. Adding a baseline is adding one file under
``model/baselines/``; the trainer, evaluator, benchmark and artifact code only speak this interface.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, ClassVar

import torch
from torch import nn

from model.batching import SeqBatch
from model.features import FeatureStats

MODELS: dict[str, type["Recommender"]] = {}


class Recommender(nn.Module):
    """Base class: scores the next item after the last position of each history in a batch.

    Subclasses set ``name`` and ``Config`` (a dataclass of hyper-parameters with defaults) and implement
    :meth:`loss` (training on every prefix, ``batch.targets`` holds the next item per position) and
    :meth:`score` (``(B, n_items + 1)`` scores; column 0 is padding and is ignored by the evaluator).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    trainable: ClassVar[bool] = True
    preset: ClassVar[dict] = {}  # config defaults of a named variant (e.g. an ablation of the same class)
    search_space: ClassVar[dict[str, list]] = {}  # hyper-parameter -> candidates for model/tuning.py
    default_lr: ClassVar[float] = 1e-3  # Adam's learning rate when the run does not set one (chosen on validation)
    # What :meth:`loss` averages over: "target" (one term per next-item prediction, every prefix) or "user"
    # (one term per history: DiffRec reconstructs a user's whole interaction vector). The trainer's
    # loss_scale="target" makes each of these units weigh the same whatever batch it falls in.
    loss_unit: ClassVar[str] = "target"

    def __init__(self, n_items: int, config: Any, stats: FeatureStats):
        super().__init__()
        self.n_items = n_items
        self.config = config
        self.stats = stats

    @property
    def max_len(self) -> int | None:
        """Most recent items a history is truncated to (None: the whole history)."""
        return getattr(self.config, "max_len", None)

    def fit_statistics(self, data, features) -> None:
        """Hook for non-gradient fitting (Pop counts); called once before training."""

    def loss(self, batch: SeqBatch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def score(self, batch: SeqBatch) -> torch.Tensor:
        raise NotImplementedError

    def regularised_parameters(self) -> list[nn.Parameter]:
        """Parameters that get explicit L2 (λ_reg) from :meth:`penalty`, if the model defines any."""
        return []

    def penalty(self) -> torch.Tensor | None:
        """A term on the parameters alone (DiffLSRec's L2, C.6), added once per optimiser step.

        Kept out of :meth:`loss` because the trainer rescales the data loss by how many targets a batch
        holds (``loss_scale="target"``); a penalty inside it would be rescaled too and weigh more in a batch
        of long histories than in one of short ones. None: the model has no such term."""
        return None


def register(cls: type[Recommender]) -> type[Recommender]:
    if cls.name in MODELS and MODELS[cls.name] is not cls:
        raise ValueError(f"model name {cls.name!r} registered twice")
    MODELS[cls.name] = cls
    return cls


def _discover() -> None:
    importlib.import_module("model.nn.difflsrec")
    import model.baselines as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"model.baselines.{mod.name}")


def available() -> list[str]:
    _discover()
    return sorted(MODELS)


def get(name: str) -> type[Recommender]:
    _discover()
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None


def make_config(name: str, overrides: dict | None = None):
    """The model's config dataclass with ``overrides`` applied (unknown keys are an error)."""
    cls = get(name)
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"{name}: unknown hyper-parameters {sorted(unknown)}; known: {sorted(known)}")
    return cls.Config(**{**cls.preset, **overrides})


def build(name: str, n_items: int, stats: FeatureStats, overrides: dict | None = None) -> Recommender:
    return get(name)(n_items, make_config(name, overrides), stats)
