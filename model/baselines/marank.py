"""MARank (Yu, Zhang, Liang & Zhang, AAAI 2019, "Multi-Order Attentive Ranking Model for Sequential
Recommendation").

Long-term preference is a matrix-factorisation term p_u . q_j. Short-term preference comes from the L most
recent items, embedded with a second item table m:

    multi-order features   m_k^l = ReLU(m_k^{l-1} + W_l m_k^{l-1} + b_l),  p^l = ReLU(p^{l-1} + U_l p^{l-1} + c_l)
                           (residual layers, l = 1..K; order 0 is the raw embeddings m_k, p_u)
    individual level       a_k^l = softmax_k( v_l^T tanh(A_l m_k^l + B_l p^l) ),   e^l = sum_k a_k^l m_k^l
    multi-order attention  b_l = softmax_l( w^T tanh(C e^l) ),                    e_c = sum_l b_l e^l
    union level            h = ResNet(e_c)   (stacked residual layers as above)
    score_j = p_u . q_j + (e_c + h) . m_j

The user-guided attention at every order keeps individual-level item interactions as a linear combination
of (mapped) item features; the residual stack on their aggregate models union-level interactions.

Simplifications of this compact version:
* Loss: full-catalogue softmax cross-entropy on every prefix (uniform protocol); the paper uses BPR with
  sampled negatives.
* The attention scorer is the additive form above; the authors' code squashes every attention logit with a
  sigmoid before the softmax, at both levels (``attention_sigmoid``, off by default: level on ml-100k, validation
  NDCG@10 0.13149 with and without it, seed 0; README, design decisions),
  and adds a skip of the most recent item at order 0, e^0 + m_t (``last_item_skip``, on by default since
  2026-12-07: validation NDCG@10 on ml-100k 0.1315 against 0.1243 without it, seed 0; README, design decisions).
* Dropout on the recent-item embeddings and before each residual layer; no explicit L2 term (use the
  trainer's weight_decay).
* Windows shorter than L (the first positions of a history) are left-padded and masked out of the
  attentions. ``max_len=None`` so every position is a training target; the model reads only the last L.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.baselines.parts import UserTable, UserWindowRecommender, fit_user_tables, windows
from model.nn.embedding import normal_padded_
from model.registry import register


@dataclass
class Config:
    d: int = 64
    L: int = 5  # recent items attended to
    n_orders: int = 2  # residual layers giving the order-1..K item/user features (K)
    n_union: int = 2  # residual layers of the union-level network
    dropout: float = 0.2
    last_item_skip: bool = True  # add the most recent item's embedding to the order-0 aggregate (the authors' code)
    attention_sigmoid: bool = False  # softmax(sigmoid(logits)) at every attention, as the authors' code: weights within e of each other
    n_users: int | None = None  # None: sized from the training data in fit_statistics
    max_len: int | None = None  # training targets per history (None: all); the window is L


class Residual(nn.Module):
    """x -> ReLU(x + W dropout(x) + b)."""

    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.lin(self.drop(x)))


class UserAttention(nn.Module):
    """Attention over a window of item features guided by a user feature: softmax_k(v^T tanh(A m_k + B p))."""

    def __init__(self, d: int, squash: bool = False):
        super().__init__()
        self.squash = squash  # sigmoid on the logits first (attention_sigmoid)
        self.A = nn.Linear(d, d, bias=False)
        self.B = nn.Linear(d, d)
        self.v = nn.Linear(d, 1, bias=False)

    def forward(self, m: torch.Tensor, p: torch.Tensor, real: torch.Tensor, L: int) -> torch.Tensor:
        """m (B, T, d) per-position item features, p (B, d), real (B, T, L) window mask -> (B, T, d)."""
        logits = self.v(torch.tanh(windows(self.A(m), L) + self.B(p)[:, None, None])).squeeze(-1)  # (B, T, L)
        if self.squash:
            logits = torch.sigmoid(logits)
        a = torch.softmax(logits.masked_fill(real == 0, -1e9), -1)  # finite even for all-padding windows
        return torch.einsum("btkd,btk->btd", windows(m, L), a)


@register
class MARank(UserWindowRecommender):
    name = "marank"
    Config = Config
    search_space = {"L": [3, 5, 8], "dropout": [0.1, 0.2, 0.3]}

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        c = config
        self.user = UserTable(c.n_users, c.d)  # p_u
        self.Q = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # q_j, long-term
        self.M = nn.Embedding(n_items + 1, c.d, padding_idx=0)  # m, short-term (recent items and candidates)
        self.drop = nn.Dropout(c.dropout)
        self.item_res = nn.ModuleList(Residual(c.d, c.dropout) for _ in range(c.n_orders))
        self.user_res = nn.ModuleList(Residual(c.d, c.dropout) for _ in range(c.n_orders))
        self.att = nn.ModuleList(UserAttention(c.d, c.attention_sigmoid) for _ in range(c.n_orders + 1))
        self.order_C = nn.Linear(c.d, c.d)
        self.order_w = nn.Linear(c.d, 1, bias=False)
        self.union = nn.ModuleList(Residual(c.d, c.dropout) for _ in range(c.n_union))
        normal_padded_(self.Q, self.M, std=0.02)

    def fit_statistics(self, data, features) -> None:
        fit_user_tables(self, data, self.user)

    def encode(self, items: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded items -> (B, T, 2d): [p_u, e_c + h] after every position."""
        L = self.config.L
        real = windows((items > 0).float(), L)  # (B, T, L)
        m, p = self.drop(self.M(items)), self.user(users)
        orders = [self.att[0](m, p, real, L) + (m if self.config.last_item_skip else 0)]  # m at t: the window's last item
        for l, (item_layer, user_layer) in enumerate(zip(self.item_res, self.user_res), start=1):
            m, p = item_layer(m), user_layer(p)  # per item / per user, before windowing: computed once
            orders.append(self.att[l](m, p, real, L))
        e = torch.stack(orders, 2)  # (B, T, K + 1, d)
        order_logits = self.order_w(torch.tanh(self.order_C(e))).squeeze(-1)
        b = torch.softmax(torch.sigmoid(order_logits) if self.config.attention_sigmoid else order_logits, -1)
        e_c = torch.einsum("btkd,btk->btd", e, b)
        h = e_c
        for layer in self.union:
            h = layer(h)
        p_u = self.user(users).unsqueeze(1).expand(-1, items.shape[1], -1)
        return torch.cat([p_u, e_c + h], -1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.Q.weight, self.M.weight], 1)  # [p_u, s] . [q_j, m_j]
