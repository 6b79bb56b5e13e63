"""The pieces of the guided reverse process: condition c_t (3.3-3.4), the noise network eps_theta
(e_t, t | c), and the SNR-adaptive guidance scale s_t (3.6)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (any shape) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TokenCondition(nn.Module):
    """c_t from the noisy latent, the aggregated short-term interest and the last k item embeddings.

    (3.3) C_t = softmax((W_Q e_t)(W_K S)^T / sqrt(d)) (W_V S)
    (3.4) c_t = g * C_t + (1 - g) * e_short,  g = sigmoid(W_g [e_t; e_short])
    With ``token_enhancement=False`` (the "w/o Token" ablation) c_t = e_short.
    """

    def __init__(self, d: int, token_enhancement: bool = True):
        super().__init__()
        self.token_enhancement = token_enhancement
        self.d = d
        if token_enhancement:
            self.W_Q = nn.Linear(d, d, bias=False)
            self.W_K = nn.Linear(d, d, bias=False)
            self.W_V = nn.Linear(d, d, bias=False)
            self.W_g = nn.Linear(2 * d, d)

    def forward(self, e_t: torch.Tensor, e_short: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """e_t, e_short (P, d); tokens (P, k, d) right-aligned; token_mask (P, k) with >= 1 real token."""
        if not self.token_enhancement:
            return e_short
        q = self.W_Q(e_t).unsqueeze(1)  # (P, 1, d)
        att = (q @ self.W_K(tokens).transpose(1, 2)) / math.sqrt(self.d)  # (P, 1, k)
        att = att.masked_fill(~token_mask.unsqueeze(1), float("-inf")).softmax(-1)
        C = (att @ self.W_V(tokens)).squeeze(1)
        g = torch.sigmoid(self.W_g(torch.cat([e_t, e_short], dim=-1)))
        return g * C + (1 - g) * e_short

    def regularised(self) -> list[nn.Parameter]:
        if not self.token_enhancement:
            return []
        return [self.W_Q.weight, self.W_K.weight, self.W_V.weight, self.W_g.weight]


class NoiseNet(nn.Module):
    """eps_theta(e_t, t | c): an MLP over [e_t, c, timestep embedding].

    The null condition (classifier-free guidance's "no condition") is a learned vector that replaces c.
    """

    def __init__(self, d: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.d = d
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.null_condition = nn.Parameter(torch.zeros(d))
        self.ff = nn.Sequential(
            nn.Linear(3 * d, hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, d),
        )

    def forward(self, e_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """e_t (P, d), t (P,) integer timesteps, c (P, d) or None for the null condition."""
        if c is None:
            c = self.null_condition.expand_as(e_t)
        temb = self.time_mlp(timestep_embedding(t, self.d))
        return self.ff(torch.cat([e_t, c, temb], dim=-1))

    def regularised(self) -> list[nn.Parameter]:
        return [m.weight for m in self.ff if isinstance(m, nn.Linear)]


class GuidanceScale(nn.Module):
    """s_t for classifier-free guidance (3.5).

    ``adaptive=True`` (ACG-SNR, 3.6):
        s_t = s_max * sigmoid(-a (t/T - b) + u^T [||e_t||, ||e_short||, log(1 + SNR_t)] + b0)
    with a, b fixed and u, b0 learned. The SNR weight of u is kept non-negative (softplus), so with a > 0
    the scale is monotone in t for fixed norms: weak guidance while the latent is noisy, stronger as
    denoising progresses (the paper's "Monotonic" guidance). Norms are divided by sqrt(d) so that u sees
    O(1) inputs whatever the embedding size.
    ``adaptive=False`` (the "w/o SNR" ablation): a constant s_t = s_const.
    """

    def __init__(self, d: int, T: int, adaptive: bool = True, s_max: float = 2.0, a: float = 10.0, b: float = 0.5, s_const: float = 1.0):
        super().__init__()
        self.adaptive, self.T, self.d = adaptive, T, d
        self.s_max, self.a, self.b, self.s_const = s_max, a, b, s_const
        if adaptive:
            self.u_norms = nn.Parameter(torch.zeros(2))
            self.u_snr_raw = nn.Parameter(torch.full((1,), -4.0))  # softplus(-4) ~ 0.018: start near the schedule-only scale
            self.b0 = nn.Parameter(torch.zeros(1))

    def forward(self, t: torch.Tensor, e_t: torch.Tensor, e_short: torch.Tensor, log1p_snr: torch.Tensor) -> torch.Tensor:
        """Returns s_t with shape (P, 1)."""
        if not self.adaptive:
            return e_t.new_full((e_t.shape[0], 1), self.s_const)
        scale = math.sqrt(self.d)
        feats = torch.stack([e_t.norm(dim=-1) / scale, e_short.norm(dim=-1) / scale], dim=-1)
        logit = -self.a * (t.float() / self.T - self.b) + feats @ self.u_norms + F.softplus(self.u_snr_raw) * log1p_snr + self.b0
        return (self.s_max * torch.sigmoid(logit)).unsqueeze(-1)
