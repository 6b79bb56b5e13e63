"""GRU4Rec (Hidasi et al., ICLR 2016) in the "sequence" setup of RecBole and Klenitskiy & Vasilev:
a GRU reads the item history, the state after every item predicts the next one, trained with
full-catalogue softmax cross-entropy against the item embedding table (input and output tied).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.batching import SeqBatch, last_real, left_align
from model.losses import catalogue_scores, full_softmax_ce
from model.nn.embedding import normal_padded_
from model.registry import Recommender, register


@dataclass
class Config:
    d: int = 64  # item embedding size, also the space the catalogue is scored in
    hidden: int | None = None  # GRU state size; None: d (otherwise a linear layer maps it back to d)
    n_layers: int = 1
    dropout: float = 0.2  # on input embeddings (and between GRU layers when n_layers > 1)
    max_len: int | None = None  # most recent items fed to the GRU; None: the whole history


@register
class GRU4Rec(Recommender):
    name = "gru4rec"
    Config = Config
    search_space = {"dropout": [0.1, 0.2, 0.3], "n_layers": [1, 2], "hidden": [None, 128]}
    # Validation NDCG@10, 3e-3 vs 1e-3: ml-100k 0.1156 vs 0.0936 (seed 0), Ciao 0.0366 vs 0.0363 (3 seeds)
    default_lr = 3e-3

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        c = config
        hidden = c.hidden or c.d
        self.item_emb = nn.Embedding(n_items + 1, c.d, padding_idx=0)
        self.drop = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.d, hidden, c.n_layers, batch_first=True, dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.dense = nn.Linear(hidden, c.d) if hidden != c.d else nn.Identity()
        # small embeddings keep initial logits near uniform; the GRU keeps PyTorch's default init
        normal_padded_(self.item_emb, std=0.02)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) left-aligned items -> (B, L, d) representation after each item."""
        out, _ = self.gru(self.drop(self.item_emb(items)))
        return self.dense(out)

    def loss(self, batch: SeqBatch):
        n = batch.mask.sum(1)
        h = self.encode(left_align(batch.items, n))
        loss = full_softmax_ce(h, left_align(batch.targets, n), self.item_emb.weight)
        return loss, {"ce": loss.item()}

    def score(self, batch: SeqBatch) -> torch.Tensor:
        n = batch.mask.sum(1)
        h = self.encode(left_align(batch.items, n))
        return catalogue_scores(last_real(h, n), self.item_emb.weight)
