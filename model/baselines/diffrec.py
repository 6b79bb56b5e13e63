"""DiffRec (Wang, Xu, Feng, Lin, He & Chua, SIGIR 2023, "Diffusion Recommender Model"), with its T-DiffRec
temporal reweighting as a flag. A NON-sequential model: it denoises a user's whole interaction vector.

    x_0 in {0,1}^{n_items}   the user's interactions (T-DiffRec: weights w_min..w_max by chronological order)
    forward                  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), t = 1..T, small noise
    denoiser                 x0_hat = MLP([dropout(x_t), Linear(sinusoid(t))])   (predicts x_0, tanh MLP)
    loss (ELBO)              L_t = w_t ||x0_hat(x_t, t) - x_0||^2 / n_items,
                             w_t = SNR(t-1) - SNR(t) for t >= 2 and 1 for t = 1 ("reweight")
                             t ~ uniform, or importance-sampled with p_t ∝ sqrt(E[L_t^2]) over the last 10
                             losses per step (both from the paper; Nichol & Dhariwal 2021)
    inference                x_T' = q_sample(x_0, T') (T' = sampling_steps, 0 = no noise), then for
                             t = T..1: x_{t-1} = posterior mean mu(x0_hat(x_t, t), x_t, t) without noise;
                             score = the final x_0 (the last step returns x0_hat exactly).

Schedule: "linear-var" (the paper's default) makes the variance 1 - abar_t linear from noise_scale *
noise_min to noise_scale * noise_max; "linear" makes beta_t linear over the same range. The first step's
variance is fixed to beta_1 = 1e-5 as in the authors' code (Sohl-Dickstein et al. 2015, 2.4.1).

How it meets this project's every-prefix protocol:
* Training row = one user's training history (a TrainBatches row is the inputs s[:-1] with targets s[1:];
  the inputs plus the last target are the whole training history), reconstructed as in the paper. One row
  per user per epoch, like the paper's epochs. ``batch.targets`` at other positions are not used.
* Scoring: the multi-hot vector of the history up to the evaluated position is the input; x0_hat ranks the
  catalogue (the evaluator removes seen items, as the paper masks training items).
* The loss is the paper's MSE, not CE. ``logs["ce"]`` carries that training objective (the reweighted MSE)
  under the key every model reports; ``logs["mse"]`` is the plain, unweighted reconstruction MSE.

Defaults are the authors' released ML-1M (clean) setting: MLP dims [200, 600], timestep embedding 10,
T = 40, noise scale 0.005, noise_min 0.005, noise_max 0.01, T' = 0, reweight on (lr 1e-3, batch 400 there).
T-DiffRec defaults w_min 0.1, w_max 1.0 (the authors' Amazon-book setting; Yelp used 0.5, 1.0); a history
of one item gets w_min, as numpy's linspace gives. Repeated items keep their largest (most recent) weight.

``w_t`` is rescaled to mean 1 over t: a constant factor, so the relative ELBO weighting is unchanged, but
the raw weights are in the thousands at these noise levels and would make the trainer's gradient clipping
(norm 5) act on every step. The paper's Adam optimiser is otherwise invariant to that constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.batching import SeqBatch
from model.registry import Recommender, register


@dataclass
class Config:
    dims: tuple[int, ...] = (200, 600)  # the paper's --dims: decoder hidden sizes (the encoder mirrors them)
    emb_size: int = 10  # timestep embedding size
    dropout: float = 0.5  # on the input vector
    norm_input: bool = False  # L2-normalise the input vector
    steps: int = 40  # T
    noise_schedule: str = "linear-var"  # or "linear"
    noise_scale: float = 0.005
    noise_min: float = 0.005
    noise_max: float = 0.01
    sampling_steps: int = 0  # T': noise the input this many steps before the T reverse steps (0: clean)
    reweight: bool = True  # ELBO weights SNR(t-1) - SNR(t); False: plain MSE at every t
    importance_sampling: bool = True  # sample t by loss history once every t has 10 recorded losses
    temporal: bool = False  # T-DiffRec: weight interactions by chronological order
    w_min: float = 0.1
    w_max: float = 1.0
    max_len: int | None = None  # the whole history forms the interaction vector


class Diffusion(nn.Module):
    """Noise schedule and Gaussian posteriors. Timesteps 1..T; index 0 is the clean x_0 (abar_0 = 1)."""

    def __init__(self, T: int, schedule: str, scale: float, lo: float, hi: float, beta_1: float = 1e-5):
        super().__init__()
        if T < 1:
            raise ValueError("steps must be >= 1")
        ramp = torch.linspace(scale * lo, scale * hi, T, dtype=torch.float64)
        if schedule == "linear-var":  # 1 - abar_t = ramp_t
            abar = 1 - ramp
            betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        elif schedule == "linear":
            betas = ramp.clone()
        else:
            raise ValueError(f"unknown noise_schedule {schedule!r} (expected 'linear-var' or 'linear')")
        betas[0] = beta_1
        if not (betas.min() > 0 and betas.max() < 1):
            raise ValueError(f"betas must lie in (0, 1); got [{betas.min():.3g}, {betas.max():.3g}] (noise_scale > 0?)")
        abar = torch.cumprod(1 - betas, 0)
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        one_minus = (1 - abar).clamp(min=1e-300)  # only index 0 is clamped (never used as a denominator)
        self.T = T
        # coefficients in float64, stored as float32: 1 - abar_t is ~1e-5 here and loses digits in float32
        buffers = {
            "betas": betas,
            "abar": abar,
            "sqrt_abar": abar.sqrt(),
            "sqrt_one_minus_abar": (1 - abar).sqrt(),
            "post_c0": betas * abar_prev.sqrt() / one_minus,  # coefficient of x_0 in the posterior mean
            "post_ct": (1 - abar_prev) * (1 - betas).sqrt() / one_minus,  # coefficient of x_t
            "post_var": betas * (1 - abar_prev) / one_minus,
        }
        for k, v in buffers.items():
            self.register_buffer(k, v.float(), persistent=False)
        snr = abar / one_minus  # index 0: huge, never read
        w = torch.cat([torch.ones(1, dtype=torch.float64), snr[1:-1] - snr[2:]])  # t = 1: 1; t >= 2: SNR(t-1) - SNR(t)
        self.register_buffer("elbo_weights", w.float(), persistent=False)  # (T,) for t = 1..T

    @staticmethod
    def _at(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return v[t].unsqueeze(-1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        return self._at(self.sqrt_abar, t) * x0 + self._at(self.sqrt_one_minus_abar, t) * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) for t >= 1:
        mean = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t,
        var = beta_t (1 - abar_{t-1}) / (1 - abar_t)."""
        mean = self._at(self.post_c0, t) * x0 + self._at(self.post_ct, t) * xt
        return mean, self._at(self.post_var, t)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, dim % 2))


class Denoiser(nn.Module):
    """x_t (B, n) and t (B,) -> x0_hat (B, n): tanh MLP n + emb -> reversed(dims) -> dims -> n."""

    def __init__(self, n: int, dims: tuple[int, ...], emb_size: int, dropout: float, norm_input: bool):
        super().__init__()
        self.emb_size, self.norm_input = emb_size, norm_input
        self.time = nn.Linear(emb_size, emb_size)
        enc = [n + emb_size, *reversed(dims)]
        dec = [*dims, n]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc[:-1], enc[1:]))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
        self.drop = nn.Dropout(dropout)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.normal_(m.bias, std=1e-3)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.norm_input:
            x = F.normalize(x, dim=-1)
        h = torch.cat([self.drop(x), self.time(timestep_embedding(t, self.emb_size))], -1)
        for layer in self.encoder:
            h = torch.tanh(layer(h))
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h


@register
class DiffRec(Recommender):
    name = "diffrec"
    Config = Config
    search_space = {"noise_scale": [0.001, 0.005, 0.01], "steps": [5, 40, 100], "dropout": [0.3, 0.5]}
    loss_unit = "user"  # the loss is a mean over users (a whole interaction vector each), as in the paper
    history_per_step = 10  # losses remembered per t for importance sampling

    def __init__(self, n_items, config, stats):
        super().__init__(n_items, config, stats)
        c = config
        if not 0 <= c.sampling_steps <= c.steps:
            raise ValueError("sampling_steps must lie in [0, steps]")
        self.diffusion = Diffusion(c.steps, c.noise_schedule, c.noise_scale, c.noise_min, c.noise_max)
        self.net = Denoiser(n_items, tuple(c.dims), c.emb_size, c.dropout, c.norm_input)
        w = self.diffusion.elbo_weights if c.reweight else torch.ones(c.steps)
        self.register_buffer("step_weights", w / w.mean(), persistent=False)
        # training-time state of the importance sampler (not part of the model)
        self.register_buffer("loss_history", torch.zeros(c.steps, self.history_per_step), persistent=False)
        self.register_buffer("loss_count", torch.zeros(c.steps, dtype=torch.long), persistent=False)

    # ---- interaction vectors ---------------------------------------------------------------------------
    def interactions(self, items: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded chronological items -> (B, n_items) x_0 (multi-hot, or T-DiffRec weights)."""
        c = self.config
        real = items > 0
        w = real.float()
        if c.temporal:  # linspace(w_min, w_max, n) over each row's n interactions, oldest first
            n = real.sum(1, keepdim=True)
            pos = torch.arange(items.shape[1], device=items.device) - (items.shape[1] - n)
            w = (c.w_min + (c.w_max - c.w_min) * pos / (n - 1).clamp(min=1)) * real
        x = torch.zeros(items.shape[0], self.n_items + 1, device=items.device)
        x.scatter_reduce_(1, items, w, reduce="amax")  # repeats keep the largest weight; padding -> column 0
        return x[:, 1:]

    # ---- training ----------------------------------------------------------------------------------------
    def sample_steps(self, B: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """t in 1..T and the importance correction p_t * T (1 under uniform sampling)."""
        T = self.config.steps
        if self.config.importance_sampling and bool((self.loss_count == self.history_per_step).all()):
            p = self.loss_history.pow(2).mean(1).sqrt()
            p = p / p.sum() * (1 - 1e-3) + 1e-3 / T  # keep a little uniform mass
            idx = torch.multinomial(p, B, replacement=True)
            return idx + 1, p[idx] * T
        return torch.randint(1, T + 1, (B,), device=device), torch.ones(B, device=device)

    @torch.no_grad()
    def record_losses(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        K = self.history_per_step
        for step in t.unique().tolist():
            new = losses[t == step][-K:].float()
            row, n = self.loss_history[step - 1], int(self.loss_count[step - 1])
            merged = torch.cat([row[:n], new])[-K:]
            row[: len(merged)] = merged
            self.loss_count[step - 1] = len(merged)

    def loss(self, batch: SeqBatch):
        history = torch.cat([batch.items, batch.targets[:, -1:]], 1)  # inputs + last target = whole history
        x0 = self.interactions(history)
        t, pt = self.sample_steps(x0.shape[0], x0.device)
        x0_hat = self.net(self.diffusion.q_sample(x0, t, torch.randn_like(x0)), t)
        mse = (x0_hat - x0).pow(2).mean(1)
        weighted = self.step_weights[t - 1] * mse
        if self.training and self.config.importance_sampling:
            self.record_losses(t, weighted.detach())
        loss = (weighted / pt).mean()
        return loss, {"ce": loss.item(), "mse": mse.mean().item()}

    # ---- inference ----------------------------------------------------------------------------------------
    def reverse(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's inference: noise to T' (none if 0), then T deterministic posterior-mean steps."""
        c = self.config
        B = x.shape[0]
        if c.sampling_steps > 0:
            x = self.diffusion.q_sample(x, torch.full((B,), c.sampling_steps, device=x.device), torch.randn_like(x))
        for step in range(c.steps, 0, -1):
            t = torch.full((B,), step, device=x.device)
            x, _ = self.diffusion.posterior(self.net(x, t), x, t)
        return x

    def score(self, batch: SeqBatch) -> torch.Tensor:
        x0_hat = self.reverse(self.interactions(batch.items))
        return F.pad(x0_hat, (1, 0), value=float("-inf"))
