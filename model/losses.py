"""Losses shared by every model: full-catalogue softmax cross-entropy (C.3-C.4) over all positions."""

from __future__ import annotations

import torch


class _CatalogueCE(torch.autograd.Function):
    """mean_p [logsumexp_i(h_p . e_i) - h_p . e_{y_p}] with a hand-written backward.

    Equivalent to ``F.cross_entropy(h @ E.T, y)`` but the (P, n_items) logits buffer is turned into the
    softmax in place and reused as the gradient, so it is allocated once instead of three times; on a
    2-core CPU this is about 1.3-1.5x faster for ML-1M-sized catalogues (``benchmarks/bench_losses.py``).
    Because the buffer is consumed, the graph supports one backward pass only (no ``retain_graph``).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, E: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        probs = h @ E.T
        row_max = probs.max(dim=1, keepdim=True).values
        probs.sub_(row_max).exp_()
        total = probs.sum(dim=1, keepdim=True)
        loss = (total.log() + row_max).squeeze(1) - (h * E[y]).sum(1)
        probs.div_(total)
        ctx.save_for_backward(h, E, y, probs)
        return loss.mean()

    @staticmethod
    def backward(ctx, grad):
        if getattr(ctx, "consumed", False):
            raise RuntimeError("catalogue_ce's backward reuses its softmax buffer and can run only once per forward")
        ctx.consumed = True
        h, E, y, probs = ctx.saved_tensors
        # d loss / d logits = softmax - onehot(y), averaged over positions; probs is not needed afterwards
        probs[torch.arange(len(y), device=y.device), y] -= 1
        probs.mul_(grad / len(y))
        return probs @ E, probs.T @ h, None


def catalogue_ce(h: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of softmax(h . E^T) over every real item. h (P, d); item_table (n_items + 1, d) with
    row 0 the padding item (excluded from the softmax); targets (P,) dense ids >= 1."""
    if h.shape[0] == 0:
        return h.sum() * 0.0
    return _CatalogueCE.apply(h, item_table[1:], targets - 1)


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all positions that have a target.

    hidden: (..., d) user representation per position; targets: (...) next item, 0 = no target (padding);
    only positions with a target are scored, so padding costs no logits.
    """
    keep = targets > 0
    return catalogue_ce(hidden[keep], item_emb, targets[keep])


def catalogue_scores(user: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """(B, d) x (n_items + 1, d) -> (B, n_items + 1) dot-product scores (C.2); column 0 is -inf."""
    scores = user @ item_emb.T
    scores[:, 0] = float("-inf")
    return scores
