"""The noise schedule (3.1) and the DDIM-style reverse step (3.7-3.8), as a small object apart from the
network, in the spirit of diffusers' ``DDIMScheduler``.

Timesteps are 1..T; index 0 stands for the clean latent (alpha_bar_0 = 1), so ``alphas_cumprod[t]`` is
``prod_{s<=t} (1 - beta_s)`` for t >= 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NoiseSchedule(nn.Module):
    def __init__(self, T: int = 50, kind: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02, noise_scale: float = 1.0):
        super().__init__()
        if T < 1:
            raise ValueError("T must be >= 1")
        self.T = T
        betas = self._betas(T, kind, beta_start, beta_end) * noise_scale
        if not (0 < betas.min() and betas.max() < 1):
            raise ValueError(f"betas must lie in (0, 1); got [{betas.min():.3g}, {betas.max():.3g}]")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.register_buffer("betas", torch.cat([torch.zeros(1, dtype=torch.float64), betas]).float(), persistent=False)
        self.register_buffer("alphas_cumprod", torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod]).float(), persistent=False)

    @staticmethod
    def _betas(T: int, kind: str, beta_start: float, beta_end: float) -> torch.Tensor:
        if kind == "linear":
            return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        if kind == "cosine":  # Nichol & Dhariwal 2021: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2)
            s = 0.008
            steps = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
            return (1 - f[1:] / f[:-1]).clamp(max=0.999)
        raise ValueError(f"unknown schedule {kind!r} (expected 'linear' or 'cosine')")

    # ---- forward process (3.1) --------------------------------------------------------------------
    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t for integer timesteps t (any shape), as a trailing-dim-broadcastable tensor."""
        return self.alphas_cumprod[t].unsqueeze(-1)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """SNR_t = alpha_bar_t / (1 - alpha_bar_t) for t >= 1."""
        a = self.alphas_cumprod[t]
        return a / (1 - a)

    def q_sample(self, e0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """e_t = sqrt(alpha_bar_t) e0 + sqrt(1 - alpha_bar_t) noise."""
        a = self.abar(t)
        return a.sqrt() * e0 + (1 - a).sqrt() * noise

    # ---- reverse process (3.7-3.8) ----------------------------------------------------------------
    def predict_e0(self, e_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(3.7): remove the predicted noise."""
        a = self.abar(t)
        return (e_t - (1 - a).sqrt() * eps) / a.sqrt()

    def sigma(self, t: torch.Tensor, t_prev: torch.Tensor, eta: float) -> torch.Tensor:
        """DDIM's sigma_t: eta = 0 is deterministic, eta = 1 matches the DDPM posterior variance."""
        a, a_prev = self.abar(t), self.abar(t_prev)
        return eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).clamp(min=0).sqrt()

    def step(self, e_t: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, eps: torch.Tensor, eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(3.8): e_{t_prev} = sqrt(abar_prev) e0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z."""
        e0 = self.predict_e0(e_t, t, eps)
        a_prev = self.abar(t_prev)
        sigma = self.sigma(t, t_prev, eta)
        direction = (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        out = a_prev.sqrt() * e0 + direction
        if eta > 0:
            out = out + sigma * (torch.randn_like(e_t) if noise is None else noise)
        return out

    def inference_timesteps(self, steps: int, start: int | None = None) -> list[tuple[int, int]]:
        """DDIM striding: ``steps`` (t, t_prev) pairs from ``start`` (default T) down to 0."""
        start = self.T if start is None else start
        if not 1 <= start <= self.T:
            raise ValueError(f"start step must be in 1..{self.T}, got {start}")
        if not 1 <= steps <= start:
            raise ValueError(f"inference steps must be in 1..{start}, got {steps}")
        grid = torch.linspace(start, 0, steps + 1).round().long().tolist()
        return list(zip(grid[:-1], grid[1:]))
