"""Pop: every user gets the same ranking, items by training-interaction count (a non-personalised floor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.batching import SeqBatch
from model.registry import Recommender, register


@dataclass
class Config:
    pass  # no hyper-parameters


@register
class Pop(Recommender):
    name = "pop"
    Config = Config
    trainable = False

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        # a buffer, so the counts travel with the state_dict into the artifact
        self.register_buffer("counts", torch.zeros(n_items + 1))

    def fit_statistics(self, data, features) -> None:
        # training interactions only: counting validation/test targets would leak them into the ranking
        items = data.sequences.items[data.train_mask()]
        counts = np.bincount(items, minlength=self.n_items + 1)[: self.n_items + 1]
        self.counts.copy_(torch.from_numpy(counts))

    def loss(self, batch: SeqBatch):
        raise RuntimeError("pop has no trainable parameters (trainable=False); call fit_statistics instead")

    def score(self, batch: SeqBatch) -> torch.Tensor:
        scores = self.counts.expand(batch.items.size(0), -1).clone()
        scores[:, 0] = float("-inf")
        return scores
