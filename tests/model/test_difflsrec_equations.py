"""Each equation of DiffLSRec (sections 3.1-3.8, appendices A-C) checked on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.batching import left_align
from model.nn.denoiser import GuidanceScale, NoiseNet, TokenCondition, timestep_embedding
from model.nn.long_term import TimeFreqGRU
from model.nn.schedule import NoiseSchedule
from model.nn.short_term import ShortTermEncoder, last_window, sliding_windows

torch.manual_seed(0)


# ---- Appendix A: interval and frequency features --------------------------------------------------------
def _two_users():
    """User 0: items 1, 2, 1, 3 at t = 0, 10, 110, 1110, training = the first 3; user 1: items 2, 2, 4 at
    t = 5, 6, 1006, training = the first 2. The later interactions (validation/test) must not count."""
    items = np.array([1, 2, 1, 3, 2, 2, 4])
    times = np.array([0, 10, 110, 1110, 5, 6, 1006])
    return items, times, np.array([0, 4, 7]), np.array([3, 2])


def test_interval_feature_is_min_max_of_training_intervals_only():
    from model.features import FeatureStats

    items, times, offsets, train_len = _two_users()
    log1p = FeatureStats.fit(items, times, offsets, train_len, n_items=4)
    # training intervals (j >= 2 within a user's training prefix): 10, 100 (user 0), 1 (user 1); not 1000
    assert (log1p.interval_min, log1p.interval_max) == (math.log1p(1), math.log1p(100))
    dt = np.array([0.0, 1, 10, 100, 1000])
    expected = np.clip((np.log1p(dt) - math.log1p(1)) / (math.log1p(100) - math.log1p(1)), 0, 1)
    assert np.allclose(log1p.interval_feature(dt), expected, atol=1e-6)
    assert log1p.interval_feature([1000.0])[0] == 1.0 and log1p.interval_feature([0.0])[0] == 0.0  # clipped when serving
    identity = FeatureStats.fit(items, times, offsets, train_len, n_items=4, interval_transform="identity")
    assert (identity.interval_min, identity.interval_max) == (1.0, 100.0)
    assert np.allclose(identity.interval_feature([1.0, 50.5, 100.0]), [0.0, 0.5, 1.0])
    # |t_j - t_{j-1}| per interaction of a sequence, the first (no previous item) 0
    assert np.allclose(log1p.sequence_intervals(np.array([0, 10, 110])), [0.0, log1p.interval_feature([10.0])[0], 1.0])


def test_frequency_is_the_normalised_training_count_bucketed_for_its_embedding():
    from model.features import FeatureStats

    items, times, offsets, train_len = _two_users()
    stats = FeatureStats.fit(items, times, offsets, train_len, n_items=4, n_freq_buckets=4)
    # training counts: item 1 twice, item 2 three times (once for user 0, twice for user 1), 3 and 4 never
    assert stats.item_counts.tolist() == [0, 2, 3, 0, 0]
    f = stats.item_frequency(np.array([1, 2, 3, 4, 9]))
    assert np.allclose(f, [math.log1p(2) / math.log1p(3), 1.0, 0.0, 0.0, 0.0])  # 9: beyond the vocabulary
    linear = FeatureStats.fit(items, times, offsets, train_len, n_items=4, freq_transform="linear")
    assert np.allclose(linear.item_frequency(np.array([1, 2, 3])), [2 / 3, 1.0, 0.0])
    # bucket = 1 + min(floor(f * n), n - 1): f = 0.79 -> 4 (of 4), f = 1 -> 4, f = 0 -> 1; padding 0
    assert stats.frequency_bucket(np.array([1, 2, 3, 0])).tolist() == [1 + int(f[0] * 4), 4, 1, 0]


# ---- 3.1: noise schedule and forward process ---------------------------------------------------------
def test_linear_schedule_alpha_bar_is_cumulative_product():
    s = NoiseSchedule(T=10, kind="linear", beta_start=0.01, beta_end=0.1)
    betas = np.linspace(0.01, 0.1, 10)
    expected = np.cumprod(1 - betas)
    assert np.allclose(s.alphas_cumprod[1:].numpy(), expected, rtol=1e-6)
    assert s.alphas_cumprod[0] == 1.0
    t = torch.tensor([1, 5, 10])
    assert np.allclose(s.snr(t).numpy(), expected[[0, 4, 9]] / (1 - expected[[0, 4, 9]]), rtol=1e-5)


def test_cosine_schedule_is_nichol_and_dhariwal():
    """alpha_bar(t) = f(t) / f(0), f(t) = cos^2(((t/T + s) / (1 + s)) pi/2), s = 0.008, each beta capped at 0.999."""
    T = 100
    s = NoiseSchedule(T=T, kind="cosine")
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    assert np.allclose(s.alphas_cumprod[1:].numpy(), np.cumprod(1 - betas), rtol=1e-5, atol=1e-7)
    away_from_the_cap = np.arange(1, T - 5)  # f(T) = 0 makes the last betas hit the cap
    assert np.allclose(s.alphas_cumprod[away_from_the_cap].numpy(), f[away_from_the_cap] / f[0], rtol=1e-4)
    assert torch.all(s.snr(torch.arange(1, T + 1)).diff() < 0)


def test_noise_scale_and_invalid_schedules():
    small = NoiseSchedule(T=10, noise_scale=0.1)
    big = NoiseSchedule(T=10)
    assert small.alphas_cumprod[-1] > big.alphas_cumprod[-1]
    with pytest.raises(ValueError):
        NoiseSchedule(T=10, kind="quadratic")
    with pytest.raises(ValueError):
        NoiseSchedule(T=10, beta_end=1.5)


def test_q_sample_matches_equation():
    s = NoiseSchedule(T=20)
    e0, eps = torch.randn(4, 6), torch.randn(4, 6)
    t = torch.tensor([1, 7, 13, 20])
    a = s.alphas_cumprod[t].unsqueeze(-1)
    assert torch.allclose(s.q_sample(e0, t, eps), a.sqrt() * e0 + (1 - a).sqrt() * eps)


# ---- 3.7-3.8: reverse steps -----------------------------------------------------------------------------
def test_predict_e0_inverts_q_sample():
    s = NoiseSchedule(T=30)
    e0, eps = torch.randn(5, 8), torch.randn(5, 8)
    t = torch.tensor([1, 3, 10, 25, 30])
    assert torch.allclose(s.predict_e0(s.q_sample(e0, t, eps), t, eps), e0, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 2, 5, 30])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_reverse_chain_recovers_e0_when_noise_prediction_is_exact(steps, eta):
    """With the oracle noise prediction eps_hat = (e_t - sqrt(abar) e0) / sqrt(1 - abar), every DDIM
    step lands on the forward marginal and the last step (t_prev = 0) returns e0 exactly."""
    s = NoiseSchedule(T=30)
    e0, z0 = torch.randn(4, 8), torch.randn(4, 8)
    t0 = torch.full((4,), 30)
    e = s.q_sample(e0, t0, z0)
    for t, t_prev in s.inference_timesteps(steps):
        tt = torch.full((4,), t)
        a = s.abar(tt)
        oracle = (e - a.sqrt() * e0) / (1 - a).sqrt()
        e = s.step(e, tt, torch.full((4,), t_prev), oracle, eta=eta)
        if eta == 0:  # deterministic DDIM keeps the starting noise: e_{t_prev} = sqrt(abar_prev) e0 + sqrt(1 - abar_prev) z0
            a_prev = s.abar(torch.full((4,), t_prev))
            assert torch.allclose(e, a_prev.sqrt() * e0 + (1 - a_prev).sqrt() * z0, atol=1e-4), (t, t_prev)
    assert torch.allclose(e, e0, atol=1e-4)


def test_step_matches_equation_3_8_with_sigma():
    s = NoiseSchedule(T=10)
    e_t, eps, z = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    t, tp = torch.full((3,), 8), torch.full((3,), 4)
    eta = 0.5
    a, ap = s.alphas_cumprod[8], s.alphas_cumprod[4]
    sigma = eta * math.sqrt((1 - ap) / (1 - a)) * math.sqrt(1 - a / ap)
    e0 = (e_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
    expected = math.sqrt(ap) * e0 + math.sqrt(1 - ap - sigma**2) * eps + sigma * z
    assert torch.allclose(s.step(e_t, t, tp, eps, eta=eta, noise=z), expected, atol=1e-5)
    # eta = 0 is deterministic: no noise term
    assert torch.allclose(s.step(e_t, t, tp, eps, eta=0.0), s.step(e_t, t, tp, eps, eta=0.0, noise=z))


def test_eta_1_step_is_the_ddpm_posterior_between_strided_steps():
    """With eta = 1, sigma_t^2 = (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev): the variance of
    q(e_prev | e_t, e_0), and given the oracle noise the step's mean is that posterior's mean."""
    s = NoiseSchedule(T=20)
    e0, z0, z = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    t, tp = torch.full((3,), 12), torch.full((3,), 5)
    a, ap = s.alphas_cumprod[12].item(), s.alphas_cumprod[5].item()
    e_t = math.sqrt(a) * e0 + math.sqrt(1 - a) * z0
    var = (1 - ap) / (1 - a) * (1 - a / ap)
    alpha = a / ap  # the strided step's own alpha
    mean = (math.sqrt(ap) * (1 - alpha) / (1 - a)) * e0 + (math.sqrt(alpha) * (1 - ap) / (1 - a)) * e_t
    assert torch.allclose(s.step(e_t, t, tp, z0, eta=1.0, noise=z), mean + math.sqrt(var) * z, atol=1e-5)


def test_inference_timesteps_stride_down_to_zero():
    s = NoiseSchedule(T=50)
    assert s.inference_timesteps(1) == [(50, 0)]
    pairs = s.inference_timesteps(5)
    assert pairs[0][0] == 50 and pairs[-1][1] == 0 and len(pairs) == 5
    assert all(a > b for a, b in pairs)
    assert s.inference_timesteps(2, start=20) == [(20, 10), (10, 0)]
    with pytest.raises(ValueError):
        s.inference_timesteps(0)
    with pytest.raises(ValueError):
        s.inference_timesteps(4, start=60)


# ---- 3.3-3.4: token-level condition ----------------------------------------------------------------------
def test_token_condition_matches_equations():
    d, k = 6, 4
    cond = TokenCondition(d)
    e_t, e_short, S = torch.randn(2, d), torch.randn(2, d), torch.randn(2, k, d)
    mask = torch.ones(2, k, dtype=torch.bool)
    q = e_t @ cond.W_Q.weight.T
    K = S @ cond.W_K.weight.T
    V = S @ cond.W_V.weight.T
    att = torch.softmax((q.unsqueeze(1) @ K.transpose(1, 2)) / math.sqrt(d), -1)
    C = (att @ V).squeeze(1)
    g = torch.sigmoid(torch.cat([e_t, e_short], -1) @ cond.W_g.weight.T + cond.W_g.bias)
    assert torch.allclose(cond(e_t, e_short, S, mask), g * C + (1 - g) * e_short, atol=1e-6)


def test_token_condition_ignores_padded_tokens_and_ablation_returns_e_short():
    d, k = 6, 4
    cond = TokenCondition(d)
    e_t, e_short, S = torch.randn(1, d), torch.randn(1, d), torch.randn(1, k, d)
    mask = torch.tensor([[False, False, True, True]])
    S2 = S.clone()
    S2[:, :2] = torch.randn(1, 2, d) * 100
    assert torch.allclose(cond(e_t, e_short, S, mask), cond(e_t, e_short, S2, mask), atol=1e-6)
    no_token = TokenCondition(d, token_enhancement=False)
    assert torch.equal(no_token(e_t, e_short, S, mask), e_short)
    assert no_token.regularised() == []
    assert len(cond.regularised()) == 4


# ---- 3.5-3.6: guidance -----------------------------------------------------------------------------------
def test_guidance_scale_bounded_by_s_max_and_rising_as_t_falls():
    T, d = 50, 8
    g = GuidanceScale(d, T, adaptive=True, s_max=3.0, a=10.0, b=0.5)
    with torch.no_grad():
        g.u_norms.copy_(torch.tensor([0.3, -0.7]))  # distinct: swapping ||e_t|| and ||e_short|| changes the scale
        g.u_snr_raw.fill_(1.0)
        g.b0.fill_(-0.2)
    s = NoiseSchedule(T)
    t = torch.arange(1, T + 1)
    e_t = torch.ones(T, d)  # fixed norms: only t and SNR_t vary
    e_short = torch.ones(T, d) * 2
    scale = g(t, e_t, e_short, torch.log1p(s.snr(t))).squeeze(-1)
    assert torch.all(scale > 0) and torch.all(scale <= 3.0)
    assert torch.all(scale[:-1] >= scale[1:]) and scale[0] > 2.9 and scale[-1] < 0.5  # larger t (noisier) -> smaller guidance
    # the formula itself (norms divided by sqrt(d): ||e_t|| / sqrt(d) = 1, ||e_short|| / sqrt(d) = 2)
    logit = -10.0 * (t / T - 0.5) + 0.3 * 1.0 - 0.7 * 2.0 + F.softplus(torch.tensor(1.0)) * torch.log1p(s.snr(t)) - 0.2
    assert torch.allclose(scale, 3.0 * torch.sigmoid(logit), atol=1e-5)


def test_guidance_monotone_even_with_negative_raw_snr_weight():
    """u's SNR weight goes through softplus, so no learned value can make the scale fall as t falls. With a
    = 0 the schedule term is gone and only the SNR term depends on t: a raw weight of -3 used as is would make
    the scale grow with t (the SNR falls with t); through softplus it cannot."""
    T, d = 20, 4
    g = GuidanceScale(d, T, adaptive=True, s_max=2.0, a=0.0)
    with torch.no_grad():
        g.u_snr_raw.fill_(-3.0)
    s = NoiseSchedule(T)
    t = torch.arange(1, T + 1)
    log1p_snr = torch.log1p(s.snr(t))
    scale = g(t, torch.ones(T, d), torch.ones(T, d), log1p_snr).squeeze(-1)
    assert torch.all(scale[:-1] >= scale[1:]) and scale[0] - scale[-1] > 1e-3  # falls with t, visibly
    raw = 2.0 * torch.sigmoid(-3.0 * log1p_snr)  # the same weight without softplus: rises with t
    assert torch.all(raw[:-1] <= raw[1:]) and raw[-1] - raw[0] > 1e-2


def test_constant_guidance_ablation():
    g = GuidanceScale(4, 10, adaptive=False, s_const=1.5)
    out = g(torch.tensor([1, 9]), torch.randn(2, 4), torch.randn(2, 4), torch.rand(2))
    assert torch.equal(out, torch.full((2, 1), 1.5))
    assert not list(g.parameters())


def test_noise_net_null_condition_and_timestep_embedding():
    net = NoiseNet(d=6, hidden=16)
    e_t, t = torch.randn(3, 6), torch.tensor([1, 2, 3])
    with torch.no_grad():
        net.null_condition.normal_()  # a learned vector, not zeros: the null condition is that vector
    null = net(e_t, t, None)
    assert torch.allclose(null, net(e_t, t, net.null_condition.detach().clone().expand(3, 6)))
    assert not torch.allclose(null, net(e_t, t, torch.zeros(3, 6)), atol=1e-4)
    emb = timestep_embedding(torch.tensor([0, 5]), 7)
    assert emb.shape == (2, 7)
    f = 10_000 ** (-torch.arange(3) / 3)  # frequencies f_j = 10000^(-j / (dim // 2))
    assert torch.allclose(emb[0], torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    assert torch.allclose(emb[1], torch.cat([torch.cos(5 * f), torch.sin(5 * f), torch.zeros(1)]), atol=1e-6)  # odd dim: one zero pad
    assert len(net.regularised()) == 3


# ---- B.1-B.4: long-term encoder ---------------------------------------------------------------------------
def _long_inputs(B=3, L=7, d=8, buckets=5):
    x = torch.randn(B, L, d)
    dt = torch.rand(B, L)
    freq = torch.randint(1, buckets + 1, (B, L))
    lengths = torch.tensor([L, 4, 1])
    mask = torch.arange(L).unsqueeze(0) >= (L - lengths).unsqueeze(1)  # left padding
    x = x * mask.unsqueeze(-1)
    freq = freq * mask
    return x, dt * mask, freq, mask


def test_long_term_step_by_step_equals_full_sequence_pass():
    enc = TimeFreqGRU(d=8, n_freq_buckets=5)
    x, dt, freq, mask = _long_inputs()
    H = enc(x, dt, freq, mask)
    h = torch.zeros(3, 8)
    for j in range(x.shape[1]):
        stepped = enc.step(h, x[:, j], dt[:, j], freq[:, j])
        h = torch.where(mask[:, j : j + 1], stepped, h)
        assert torch.allclose(h, H[:, j], atol=1e-6)


def test_long_term_padding_invariance_and_single_row_steps():
    enc = TimeFreqGRU(d=8, n_freq_buckets=5)
    x, dt, freq, mask = _long_inputs()
    full = enc(x, dt, freq, mask)[1, -1]
    n = 4  # row 1 has 4 real items: running them alone (no padding) gives the same state
    alone = enc(x[1:2, -n:], dt[1:2, -n:], freq[1:2, -n:], mask[1:2, -n:])[0, -1]
    assert torch.allclose(full, alone, atol=1e-6)
    h = torch.zeros(1, 8)
    for j in range(x.shape[1] - n, x.shape[1]):
        h = enc.step(h, x[1:2, j], dt[1:2, j], freq[1:2, j])
    assert torch.allclose(h[0], full, atol=1e-6)


def _gru_update(enc, h, x, ef, d):
    """The GRU update with frequency modulation of the candidate, from state ``h`` (already attenuated)."""
    xp = x @ enc.x_proj.weight.T + enc.x_proj.bias
    hp = h @ enc.h_proj.weight.T + enc.h_proj.bias
    z = torch.sigmoid(xp[:, :d] + hp[:, :d])
    r = torch.sigmoid(xp[:, d : 2 * d] + hp[:, d : 2 * d])
    n = torch.tanh(xp[:, 2 * d :] + ef @ enc.freq_dir.weight.T + r * hp[:, 2 * d :])
    return (1 - z) * n + z * h


def test_long_term_gates_match_equations():
    """B.1-B.3 and the decayed GRU update, computed by hand for one step."""
    d = 4
    enc = TimeFreqGRU(d=d, n_freq_buckets=3)
    h0, x = torch.randn(1, d), torch.randn(1, d)
    dt, f = torch.tensor([0.3]), torch.tensor([2])
    ef = enc.freq_emb.weight[2:3]
    g_time = torch.sigmoid(enc.time_gate.weight.T * 0.3 + enc.time_gate.bias)
    g_freq = torch.sigmoid(ef @ enc.freq_gate.weight.T + enc.freq_gate.bias)
    delta = F.softplus(torch.cat([g_time, g_freq], -1) @ enc.decay.weight.T + enc.decay.bias)
    expected = _gru_update(enc, torch.exp(-delta) * h0, x, ef, d)
    assert torch.allclose(enc.step(h0, x, dt, f), expected, atol=1e-6)
    # the decay matters: the same step without attenuating h_{t-1} gives another state
    with torch.no_grad():
        enc.decay.bias.fill_(-30.0)  # softplus(-30) ~ 0: no attenuation
        enc.decay.weight.zero_()
    undecayed = _gru_update(enc, h0, x, ef, d)
    assert torch.allclose(enc.step(h0, x, dt, f), undecayed, atol=1e-6)
    assert not torch.allclose(expected, undecayed, atol=1e-3)


# ---- B.5: short-term encoder and windows ---------------------------------------------------------------------
def test_sliding_and_last_windows():
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    w = sliding_windows(items, 3)
    assert w.shape == (2, 5, 3)
    assert w[0, 2].tolist() == [0, 0, 3] and w[0, 4].tolist() == [3, 4, 5] and w[1, 1].tolist() == [0, 1, 2]
    assert last_window(items, 3).tolist() == [[3, 4, 5], [3, 4, 5]]
    assert last_window(items[:, -2:], 4).tolist() == [[0, 0, 4, 5], [0, 0, 4, 5]]
    assert left_align(torch.tensor([[0, 0, 7, 8]]), torch.tensor([2])).tolist() == [[7, 8, 0, 0]]


def test_short_term_encoder_is_gru_then_attention_and_ignores_padding():
    d = 5
    enc = ShortTermEncoder(d)
    real = torch.randn(1, 3, d)
    padded = torch.cat([torch.randn(1, 2, d) * 10, real], dim=1)  # garbage where the mask says padding
    mask = torch.tensor([[False, False, True, True, True]])
    got = enc(padded, mask)
    H, _ = enc.gru(real)
    q, K, V = enc.q(H[:, -1:]), enc.k(H), enc.v(H)
    expected = (torch.softmax(q @ K.transpose(1, 2) / math.sqrt(d), -1) @ V).squeeze(1)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(enc(real, torch.ones(1, 3, dtype=torch.bool)), expected, atol=1e-6)


# ---- 3.5 + 3.6 + 3.7-3.8 together: the guided noise estimate and the reverse chain of the model -----------
def _small_difflsrec(**over):
    from model.registry import build
    from tests.model.toy import toy_dataset, toy_stats

    data = toy_dataset(n_users=6, n_items=9)
    torch.manual_seed(0)
    model = build("difflsrec", data.sequences.n_items, toy_stats(data), {"d": 4, "short_len": 3, "T": 10, "denoiser_hidden": 8, **over}).eval()
    with torch.no_grad():  # move the guidance and the null condition away from their initial values
        model.guidance.u_norms.copy_(torch.tensor([0.3, -0.7]))
        model.guidance.u_snr_raw.fill_(0.2)
        model.guidance.b0.fill_(0.4)
        model.eps_net.null_condition.normal_()
    return model


def _guided_inputs(P=5, d=4, k=3):
    torch.manual_seed(1)
    mask = torch.ones(P, k, dtype=torch.bool)
    mask[0, 0] = mask[1, :2] = False  # shorter windows: padded tokens on the left
    return torch.randn(P, d), torch.randn(P, d), torch.randn(P, k, d), mask


def _eps_by_hand(model, e_t, t, e_short, tokens, mask):
    """(3.5) with s_t from (3.6) written out (norms over sqrt(d), SNR weight through softplus, as documented)."""
    g, d = model.guidance, e_t.shape[-1]
    snr = model.schedule.alphas_cumprod[t] / (1 - model.schedule.alphas_cumprod[t])
    logit = (-g.a * (t / g.T - g.b) + g.u_norms[0] * e_t.norm(dim=-1) / math.sqrt(d) + g.u_norms[1] * e_short.norm(dim=-1) / math.sqrt(d)
             + F.softplus(g.u_snr_raw) * torch.log1p(snr) + g.b0)
    s = (g.s_max * torch.sigmoid(logit)).unsqueeze(-1)
    c = model.condition(e_t, e_short, tokens, mask)
    return (1 + s) * model.eps_net(e_t, t, c) - s * model.eps_net(e_t, t, None), s


def test_guided_noise_estimate_is_equation_3_5_with_the_scale_of_3_6():
    model = _small_difflsrec()
    e_t, e_short, tokens, mask = _guided_inputs()
    t = torch.tensor([1, 3, 5, 8, 10])
    expected, s = _eps_by_hand(model, e_t, t, e_short, tokens, mask)
    with torch.no_grad():
        assert torch.allclose(model.guided_eps(e_t, t, e_short, tokens, mask), expected, atol=1e-6)
        # the test is not blind: the scale is far from 0 and the two predictions differ
        assert s.max() > 1 and not torch.allclose(model.eps_net(e_t, t, None), model.eps_net(e_t, t, model.condition(e_t, e_short, tokens, mask)), atol=1e-2)


@pytest.mark.parametrize("steps,start,eta", [(1, None, 0.0), (3, None, 0.0), (2, 6, 0.0), (3, None, 0.5)])
def test_reverse_is_the_guided_ddim_chain_from_the_noised_long_term_embedding(steps, start, eta):
    """C.1: e_T = sqrt(abar_T) e_long (the deterministic start, inference_noise="zero"), then (3.7)-(3.8) with
    the guided estimate at each strided step, sigma_t z included when eta > 0."""
    model = _small_difflsrec(start_step=start, eta=eta)
    e_long, e_short, tokens, mask = _guided_inputs()
    sched, P = model.schedule, e_long.shape[0]
    first = start or 10
    torch.manual_seed(7)
    with torch.no_grad():
        got = model.reverse(e_long, e_short, tokens, mask, steps, "zero")
    torch.manual_seed(7)  # the same draws of z, in the same order
    e = math.sqrt(sched.alphas_cumprod[first]) * e_long
    for t, t_prev in sched.inference_timesteps(steps, first):
        a, a_prev = sched.alphas_cumprod[t].item(), sched.alphas_cumprod[t_prev].item()
        eps, _ = _eps_by_hand(model, e, torch.full((P,), t), e_short, tokens, mask)
        e0 = (e - math.sqrt(1 - a) * eps) / math.sqrt(a)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
        e = math.sqrt(a_prev) * e0 + math.sqrt(1 - a_prev - sigma**2) * eps
        if eta > 0:
            e = e + sigma * torch.randn_like(e)
    assert torch.allclose(got, e.detach(), atol=1e-5)
    assert not torch.allclose(got, e_long, atol=1e-2)  # the chain moved the latent
