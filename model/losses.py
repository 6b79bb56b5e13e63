"""Losses shared by every model: full-catalogue softmax cross-entropy (C.3-C.4) over all positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, item_emb: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``softmax(hidden . E^T)`` over the whole catalogue.

    hidden: (..., d) user representation per position; targets: (...) next item, 0 = no target (padding);
    item_emb: (n_items + 1, d) with row 0 the padding item, which is excluded from the softmax.
    Only positions with a target are scored, so padding costs no (B, L, n_items) logits.
    """
    keep = targets > 0
    h = hidden[keep]
    y = targets[keep] - 1
    logits = h @ item_emb[1:].T
    if bias is not None:
        logits = logits + bias[1:]
    return F.cross_entropy(logits, y)


def catalogue_scores(user: torch.Tensor, item_emb: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(B, d) x (n_items + 1, d) -> (B, n_items + 1) dot-product scores (C.2); column 0 is -inf."""
    scores = user @ item_emb.T
    if bias is not None:
        scores = scores + bias
    scores[:, 0] = float("-inf")
    return scores
