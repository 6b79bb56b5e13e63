"""The hand-written catalogue cross-entropy equals torch's, value and gradients."""

import pytest
import torch
import torch.nn.functional as F

from model.losses import catalogue_ce, catalogue_scores, full_softmax_ce


def test_catalogue_ce_matches_torch_cross_entropy():
    torch.manual_seed(0)
    h = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    E = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)  # row 0 = padding
    y = torch.tensor([1, 2, 10, 4, 4, 7, 1])
    ours = catalogue_ce(h, E, y)
    ref = F.cross_entropy(h @ E[1:].T, y - 1)
    assert torch.allclose(ours, ref)
    g_ours = torch.autograd.grad(ours * 3.0, (h, E))
    g_ref = torch.autograd.grad(ref * 3.0, (h, E))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b)
    assert torch.all(g_ours[1][0] == 0)  # the padding row never receives gradient
    loss = catalogue_ce(h, E, y)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_full_softmax_ce_skips_padding_positions_and_scores_mask_padding():
    torch.manual_seed(1)
    hidden, E = torch.randn(2, 3, 4), torch.randn(6, 4)
    targets = torch.tensor([[0, 2, 3], [0, 0, 5]])
    keep = targets > 0
    assert torch.allclose(full_softmax_ce(hidden, targets, E), F.cross_entropy(hidden[keep] @ E[1:].T, targets[keep] - 1))
    s = catalogue_scores(torch.randn(3, 4), E)
    assert s.shape == (3, 6) and torch.all(s[:, 0] == float("-inf"))
