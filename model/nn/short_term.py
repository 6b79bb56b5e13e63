"""Short-term encoder F_short (B.5) and the sliding windows of the last n items it reads.

A GRU runs over the last n items, then scaled dot-product self-attention over its hidden states H; the
representation is the attention output at the most recent item (its query attends over the window).
Windows are right-aligned (most recent item last, left padding); the GRU runs on a rolled copy with the
real items first so that its states never see padding, and attention masks padded keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.batching import last_real, left_align


def sliding_windows(items: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L) left-padded sequences -> (B, L, n): at position j, the last n items up to and including j."""
    padded = F.pad(items, (n - 1, 0))
    return padded.unfold(1, n, 1)


def last_window(items: torch.Tensor, n: int) -> torch.Tensor:
    """(B, L) left-padded sequences -> (B, n) window of the most recent n items (left-padded)."""
    L = items.shape[1]
    if L >= n:
        return items[:, L - n :]
    return F.pad(items, (n - L, 0))


class ShortTermEncoder(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.gru = nn.GRU(d, d, batch_first=True)
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)

    def forward(self, window_emb: torch.Tensor, window_mask: torch.Tensor) -> torch.Tensor:
        """window_emb (P, n, d) right-aligned, window_mask (P, n) -> e_short (P, d). Rows need >= 1 real item."""
        lengths = window_mask.sum(1)
        H, _ = self.gru(left_align(window_emb, lengths))
        valid = torch.arange(H.shape[1], device=H.device).unsqueeze(0) < lengths.unsqueeze(1)
        last = last_real(H, lengths).unsqueeze(1)  # (P, 1, d)
        scores = (self.q(last) @ self.k(H).transpose(1, 2)) / math.sqrt(H.shape[-1])  # (P, 1, n)
        scores = scores.masked_fill(~valid.unsqueeze(1), float("-inf"))
        return (scores.softmax(-1) @ self.v(H)).squeeze(1)
