"""HGN (Ma, Kang & Liu, KDD 2019, "Hierarchical Gating Networks for Sequential Recommendation").

For user u and the window S = (e_1..e_L) of the embeddings of the last L items (oldest first):

    S^F   = S * sigmoid(W_g1 S + W_g2 u + b_g)              feature gating (per item, per latent feature)
    g     = sigmoid(w_g3^T S^F + u^T W_g4)                  instance gating (one gate per window slot)
    s_u   = sum_k g_k S^F_k / sum_k g_k                     gated average pooling
    score_j = b_j + (u + s_u + sum_k e_k) . q_j             user term + sequence term + item-item product

e are the input item embeddings, q the candidate (output) embeddings, b an item bias.

Implemented: both gating layers with the user conditioning, the position-specific user gate W_g4 (one
column per window slot), the gated average pooling, the user term and the item-item product term, the
item bias (present in the authors' prediction layer). Differences:
* Loss: full-catalogue softmax cross-entropy on every prefix (uniform protocol here); the paper trains
  with BPR on the next T=3 items of each sliding window with sampled negatives.
* Windows shorter than L (the first positions of a history) are left-padded: padding slots get gate 0
  and contribute nothing to the pooling or the item-item product.
* No explicit L2 term (use the trainer's weight_decay).
* ``max_len=None`` so every position of the history is a training target (with a small max_len the trainer
  would keep only the last max_len targets per user); the model itself reads only the last L items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.baselines.parts import UserTable, UserWindowRecommender, fit_user_tables, windows
from model.nn.embedding import normal_padded_
from model.registry import register


@dataclass
class Config:
    d: int = 64
    L: int = 5  # window of recent items (the paper's L; 5 on most of its datasets)
    n_users: int | None = None  # None: sized from the training data in fit_statistics
    max_len: int | None = None  # training targets per history (None: all); the window is L


@register
class HGN(UserWindowRecommender):
    name = "hgn"
    Config = Config
    search_space = {"L": [3, 5, 8]}

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        c = config
        self.item_in = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # e: items in the window
        self.item_out = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # q: candidates
        self.bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.user = UserTable(c.n_users, c.d)
        self.g1 = nn.Linear(c.d, c.d, bias=False)  # W_g1
        self.g2 = nn.Linear(c.d, c.d)  # W_g2 and b_g
        self.g3 = nn.Linear(c.d, 1, bias=False)  # w_g3
        self.g4 = nn.Linear(c.d, c.L, bias=False)  # W_g4: one user-dependent offset per window slot
        normal_padded_(self.item_in, self.item_out, std=0.02)
        nn.init.zeros_(self.bias.weight)

    def fit_statistics(self, data, features) -> None:
        fit_user_tables(self, data, self.user)

    def encode(self, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded items -> (B, T, d + 1): [u + s_u + sum e, 1] after every position."""
        L = self.config.L
        e = self.item_in(items)  # (B, T, d)
        u = self.user(users)  # (B, d)
        sf = e * torch.sigmoid(self.g1(e) + self.g2(u).unsqueeze(1))  # feature gating depends on item and user only
        real = windows((items > 0).to(e.dtype), L)  # (B, T, L)
        gate = torch.sigmoid(windows(self.g3(sf).squeeze(-1), L) + self.g4(u).unsqueeze(1)) * real
        s = torch.einsum("btkd,btk->btd", windows(sf, L), gate) / gate.sum(-1, keepdim=True).clamp(min=1e-9)
        h = u.unsqueeze(1) + s + windows(e, L).sum(2)
        return torch.cat([h, torch.ones_like(h[..., :1])], -1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.item_out.weight, self.bias.weight], 1)
