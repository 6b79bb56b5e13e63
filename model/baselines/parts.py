"""Pieces shared by the baselines with per-user parameters and fixed windows (Fossil, HGN, MARank)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.batching import SeqBatch
from model.losses import catalogue_scores, full_softmax_ce
from model.registry import Recommender


class UserTable(nn.Module):
    """Per-user parameters, one row per dense user id.

    The registry builds models from ``(n_items, config, stats)`` only, so the number of users is either
    given as ``config.n_users`` or taken from the training data in ``fit_statistics`` (the trainer calls it
    before building the optimiser); the owner then writes it into its config, so a saved artifact rebuilds
    the same shape. Ids beyond the table (users who arrived after training) read a row of zeros.
    """

    def __init__(self, n_users: int | None, dim: int, std: float = 0.02, init: float | None = None):
        super().__init__()
        self.dim, self.std, self.init = dim, std, init
        self.weight = nn.Parameter(self._new(n_users or 0, torch.device("cpu")))

    def _new(self, n: int, device) -> torch.Tensor:
        if self.init is not None:
            return torch.full((n, self.dim), self.init, device=device)
        return torch.randn(n, self.dim, device=device) * self.std

    def resize(self, n_users: int) -> None:
        if n_users != self.weight.shape[0]:
            self.weight = nn.Parameter(self._new(n_users, self.weight.device))

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        n = self.weight.shape[0]
        if n == 0:
            return self.weight.new_zeros(*users.shape, self.dim)
        known = (users < n).unsqueeze(-1)
        return self.weight[users.clamp(max=n - 1)] * known


def fit_user_tables(model: Recommender, data, *tables: UserTable) -> None:
    """Size ``tables`` to the dataset's users unless the config fixed ``n_users`` (then keep it)."""
    if model.config.n_users is None:
        model.config.n_users = int(data.sequences.n_users)
    for t in tables:
        t.resize(model.config.n_users)


def windows(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L, ...) left-padded per-position tensor -> (B, L, n, ...): at position t the entries of positions
    t-n+1..t, oldest first (zeros before the row start). A view of the padded input, no copy."""
    pad = [0, 0] * (x.dim() - 2) + [n - 1, 0]
    w = F.pad(x, pad).unfold(1, n, 1)  # (B, L, ..., n)
    return w.movedim(-1, 2)


class UserWindowRecommender(Recommender):
    """Base of the models that read a user row and a fixed window of recent items (Fossil, HGN, MARank).

    A subclass defines ``encode(items, users) -> (B, T, D)`` (the user representation after every
    position) and ``item_table() -> (n_items + 1, D)``; the score of item j is their inner product. Training
    is full-catalogue softmax cross-entropy on every prefix. Scoring encodes only the last ``config.L``
    items: the window is all such a model reads besides the user row (Fossil, which also pools the whole
    history, overrides ``score``).
    """

    def loss(self, batch: SeqBatch):
        h = self.encode(batch.items, batch.users)
        loss = full_softmax_ce(h, batch.targets, self.item_table())
        return loss, {"ce": loss.item()}

    def score(self, batch: SeqBatch) -> torch.Tensor:
        h = self.encode(batch.items[:, -self.config.L :], batch.users)[:, -1]
        return catalogue_scores(h, self.item_table())
