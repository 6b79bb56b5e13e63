"""Fossil (He & McAuley, ICDM 2016, "Fusing Similarity Models with Markov Chains for Sparse Sequential
Recommendation"): a FISM similarity term over the user's whole history fused with a personalised
higher-order Markov chain over the last L items.

Score of the next item j after the prefix s_1..s_t of user u (the paper's Eq. for p_hat_{u,t,j}):

    h_{u,t}  = |I_t|^-alpha * sum_{j' in I_t} P_{j'}                     similarity (FISM) term
             + sum_{k=1..L} (eta_k + eta_{u,k}) * P_{s_{t-k+1}}            L-order Markov chain
    score_j  = beta_j + h_{u,t} . Q_j

I_t is the set of distinct items in the prefix, P the item embedding shared by both terms, Q the
candidate embedding, eta global and eta_u per-user chain weights, beta an item bias.

Implemented as in the paper: the shared P for both terms, the |I|^-alpha normalisation, global +
personalised chain weights, the item bias. Differences:
* Loss: full-catalogue softmax cross-entropy on every prefix, like every model here (uniform protocol);
  the paper trains with S-BPR (one sampled negative per positive).
* FISM excludes the candidate j from its own similarity sum (I_u \\ {j}); with a softmax over every
  candidate that would need one user vector per candidate, so the sum runs over the whole prefix set. This
  only differs when the target repeats an earlier item; the evaluator removes seen items anyway.
* The history set is the prefix up to the scored position (causal), not the user's whole training set.
* ``max_len=None``: the similarity term needs the whole history; training batches are bounded by the
  trainer's token budget instead.
* No explicit L2 term (the paper's lambda ||Theta||^2): the trainer's ``--weight-decay`` applies one, 0 by
  default for every model, as for HGN and MARank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.baselines.parts import UserTable, UserWindowRecommender, fit_user_tables, windows
from model.batching import SeqBatch
from model.losses import catalogue_scores
from model.nn.embedding import normal_padded_
from model.registry import register


@dataclass
class Config:
    d: int = 64
    L: int = 3  # Markov-chain order (the paper tunes L in 1..3; 3 on its sparse datasets)
    alpha: float = 0.2  # |I|^-alpha normalisation of the similarity sum (FISM's alpha, in [0, 1])
    n_users: int | None = None  # None: sized from the training data in fit_statistics
    max_len: int | None = None  # the similarity term reads the whole history


@register
class Fossil(UserWindowRecommender):
    name = "fossil"
    Config = Config
    search_space = {"L": [1, 2, 3], "alpha": [0.2, 0.5, 0.8]}

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        c = config
        self.P = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # history items (both terms)
        self.Q = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # candidates
        self.beta = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.eta = nn.Parameter(torch.ones(c.L))  # global chain weights, eta_1 = most recent item
        self.eta_u = UserTable(c.n_users, c.L, init=0.0)  # personalised offsets, start at the global chain
        normal_padded_(self.P, self.Q, std=0.02)
        nn.init.zeros_(self.beta.weight)

    def fit_statistics(self, data, features) -> None:
        fit_user_tables(self, data, self.eta_u)

    def encode(self, items: torch.Tensor, users: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, L) left-padded items -> (B, L, d + 1): [h_{u,t}, 1] after every position (bias column last);
        ``last_only``: (B, d + 1) after the most recent item only (scoring, no per-position buffers)."""
        c = self.config
        e = self.P(items)  # (B, L, d), zeros at padding
        # similarity term over the distinct items of each prefix: count an item at its first occurrence only
        srt, order = items.sort(dim=1, stable=True)
        first_sorted = srt != F.pad(srt, (1, 0), value=-1)[:, :-1]
        first = torch.zeros_like(first_sorted).scatter_(1, order, first_sorted) & (items > 0)
        # Markov chain over the last L items: eta_k (k = 1 most recent) weights the item k - 1 steps back
        eta = self.eta.flip(0) + self.eta_u(users).flip(-1)  # (B, L), oldest slot first like windows()
        if last_only:
            count = first.sum(1, keepdim=True).clamp(min=1).to(e.dtype)
            sim = (e * first.unsqueeze(-1)).sum(1) * count.pow(-c.alpha)
            mc = torch.einsum("bkd,bk->bd", windows(e[:, -c.L :], c.L)[:, -1], eta)
        else:
            count = first.cumsum(1).clamp(min=1).unsqueeze(-1).to(e.dtype)
            sim = (e * first.unsqueeze(-1)).cumsum(1) * count.pow(-c.alpha)
            mc = torch.einsum("btkd,bk->btd", windows(e, c.L), eta)
        h = sim + mc
        return torch.cat([h, torch.ones_like(h[..., :1])], -1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.Q.weight, self.beta.weight], 1)  # (n_items + 1, d + 1): h . Q_j + beta_j

    def score(self, batch: SeqBatch) -> torch.Tensor:
        return catalogue_scores(self.encode(batch.items, batch.users, last_only=True), self.item_table())
