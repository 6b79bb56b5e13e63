"""Streaming helpers on top of a model's streaming API.

``LongTermStepper`` is ``long_step`` applied to several new events per user at once: the long-term GRU
continues from each user's current state over their new events, and the state after every event comes
back. The input-side projections of all events are computed in one pass (as ``encode_long`` does), and the
recurrence runs under TorchScript when the GRU module scripts: with a handful of users per micro-batch the
recurrence is a few tiny ops per event, and the eager Python loop costs about 3x the scripted one on CPU
(same module, same weights, identical results).
"""

from __future__ import annotations

import logging
import warnings

import torch

log = logging.getLogger(__name__)


class LongTermStepper:
    def __init__(self, model, script: bool = True):
        self.model = model
        self.gru = model.long
        if script:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchScript's deprecation notice
                    self.gru = torch.jit.script(model.long)
            except Exception as error:  # a GRU variant TorchScript cannot compile: stay eager
                log.info("long-term GRU runs eagerly (TorchScript: %s)", error)

    def __call__(self, h0: torch.Tensor, items: torch.Tensor, intervals: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """h0 (B, d) current states; items (B, L) dense ids of each row's new events, oldest first, 0 = no
        event (rows padded on the right); intervals (B, L) normalised; freqs (B, L) bucket ids.

        Returns (B, L, d): the state after each position (a padded position repeats the state before it),
        equal to calling ``model.long_step`` event by event.
        """
        return self.gru(self.model.item_emb(items), intervals, freqs, items > 0, h0)


class _Fuse(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, e_long: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        return self.model.fuse(e_long, window)


class Fusion:
    """``model.fuse`` for serving: traced by TorchScript when the trace reproduces the eager function.

    ``fuse`` is ~100 small ops (short-term GRU and attention, then per reverse step the condition, the
    noise network run twice and the guidance scale); traced, the Python dispatch of each op is gone, which
    halves its CPU cost at the handful of rows a micro-batch holds. A trace freezes Python control flow
    (the configured steps, eta, fusion kind), so it is built for one loaded model and checked against the
    eager ``fuse`` on probe batches of other sizes, with left padding; any difference (a stochastic
    sampler, data-dependent branches in a future model) keeps the eager function.
    """

    def __init__(self, model, trace: bool = True):
        self.model = model
        self.run = model.fuse
        if trace:
            self.run = self._traced_or_eager(model)

    def __call__(self, e_long: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        return self.run(e_long, window)

    @staticmethod
    def _traced_or_eager(model):
        device = next(model.parameters()).device
        n, d = model.config.short_len, model.config.d
        generator = torch.Generator().manual_seed(0)

        def probe(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
            window = torch.randint(1, model.n_items + 1, (rows, n), generator=generator)
            window[0, : n - 1] = 0  # one item only, left-padded
            return (0.1 * torch.randn(rows, d, generator=generator)).to(device), window.to(device)

        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic, checked below instead
                traced = torch.jit.trace(_Fuse(model), probe(4), check_trace=False)
                for rows in (1, 7):
                    inputs = probe(rows)
                    for _ in range(3):  # TorchScript optimises after the first calls: check the optimised graph
                        if not torch.allclose(traced(*inputs), model.fuse(*inputs), atol=1e-6, rtol=1e-5):
                            raise ValueError(f"traced fuse differs from eager on {rows} rows")
        except Exception as error:
            log.info("fuse runs eagerly (trace: %s)", error)
            return model.fuse
        return traced
