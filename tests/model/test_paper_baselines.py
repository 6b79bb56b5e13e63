"""Fossil, MARank, HGN and DiffRec (the paper's Table 1 baselines): shapes, gradients, registry and user
tables, padding invariance, causality of every-prefix training, each model's equations on small tensors,
DiffRec's diffusion formulas and temporal weights, and short end-to-end training runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model import registry
from model.baselines.diffrec import DiffRec, Diffusion
from model.baselines.fossil import Fossil
from model.baselines.hgn import HGN
from model.baselines.marank import MARank
from model.baselines.parts import UserTable, windows
from model.batching import FeatureView, SeqBatch, TrainBatches
from model.data.dataset import PreparedDataset, Sequences, Split
from model.evaluation import evaluate
from model.losses import catalogue_scores
from model.training import TrainConfig, train
from tests.model.toy import toy_dataset, toy_stats

N_ITEMS = 20
TOY = toy_dataset(n_users=6, n_items=N_ITEMS, min_len=6, max_len=12)
STATS = toy_stats(TOY)
SMALL = {
    "fossil": {"d": 16, "L": 3},
    "hgn": {"d": 16, "L": 4},
    "marank": {"d": 16, "L": 4, "dropout": 0.1},
    "diffrec": {"dims": (24,), "steps": 5, "noise_scale": 0.1, "noise_min": 0.001, "noise_max": 0.02},
}
SEQUENTIAL = ["fossil", "hgn", "marank"]
ALL = [*SEQUENTIAL, "diffrec"]


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only cost time on a shared 2-core box
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def make(name: str, data: PreparedDataset = TOY, **over):
    model = registry.build(name, data.sequences.n_items, toy_stats(data), {**SMALL[name], **over})
    model.fit_statistics(data, None)  # sizes the user tables
    return model


def padded_batch(rows: list[list[int]], L: int, users: list[int] | None = None) -> SeqBatch:
    items = torch.zeros(len(rows), L, dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            items[b, L - len(r) :] = torch.tensor(r)
    return SeqBatch(
        items=items,
        intervals=torch.zeros(len(rows), L),
        freqs=(items > 0).long(),
        lengths=torch.tensor([len(r) for r in rows]),
        users=torch.tensor(users if users is not None else list(range(len(rows)))),
    )


def first_batch(data=TOY, batch_size=8) -> SeqBatch:
    return next(iter(TrainBatches(data, FeatureView.build(data, toy_stats(data)), batch_size=batch_size)))


# ---- shapes, losses, gradients --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_score_shape_and_padding_column(name):
    model = make(name).eval()
    scores = model.score(padded_batch([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]], L=6))
    assert scores.shape == (3, N_ITEMS + 1) and scores.dtype == torch.float32
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()


@pytest.mark.parametrize("name", ALL)
def test_loss_finite_and_every_parameter_gets_a_gradient(name):
    model = make(name).train()
    loss, logs = model.loss(first_batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert isinstance(logs["ce"], float) and logs["ce"] == pytest.approx(loss.item())
    if name in SEQUENTIAL:  # small init: near-uniform softmax at the start
        assert abs(loss.item() - np.log(N_ITEMS)) < 0.3
    else:
        assert logs["mse"] > 0
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


# ---- registry and the per-user tables ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_registry_build_and_unknown_hyper_parameter(name):
    cls = {"fossil": Fossil, "hgn": HGN, "marank": MARank, "diffrec": DiffRec}[name]
    model = registry.build(name, N_ITEMS, STATS)
    assert isinstance(model, cls) and model.name == name and model.trainable
    assert model.max_len is None  # Fossil/DiffRec read the whole history; HGN/MARank train on every position
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        registry.build(name, N_ITEMS, STATS, {"n_heads": 2})


def test_paper_defaults():
    assert dataclasses.asdict(registry.make_config("fossil")) == {"d": 64, "L": 3, "alpha": 0.2, "n_users": None, "max_len": None}
    hgn, marank = registry.make_config("hgn"), registry.make_config("marank")
    assert (hgn.d, hgn.L, marank.d, marank.L, marank.n_orders, marank.n_union) == (64, 5, 64, 5, 2, 2)
    c = registry.make_config("diffrec")
    assert (tuple(c.dims), c.emb_size, c.steps, c.noise_scale, c.noise_min, c.noise_max) == ((200, 600), 10, 40, 0.005, 0.005, 0.01)
    assert c.noise_schedule == "linear-var" and c.sampling_steps == 0 and c.reweight and not c.temporal


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_user_table_sized_by_data_and_rebuilt_from_saved_config(name):
    model = make(name).eval()
    assert model.config.n_users == TOY.sequences.n_users
    # what the artifact does: rebuild from the saved config, load the weights, get the same scores
    rebuilt = registry.build(name, N_ITEMS, STATS, dataclasses.asdict(model.config))
    rebuilt.load_state_dict(model.state_dict())
    batch = padded_batch([[1, 2, 3], [4, 5]], L=3, users=[0, 5])
    assert torch.equal(rebuilt.eval().score(batch), model.score(batch))
    # users who arrived after training read a zero row and still get finite scores
    scores = model.score(padded_batch([[1, 2, 3]], L=3, users=[TOY.sequences.n_users + 7]))
    assert torch.isfinite(scores[:, 1:]).all()
    # the user matters: two users with the same history get different scores (Fossil's eta_u starts at 0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, UserTable):
                m.weight.normal_()
    same = model.score(padded_batch([[1, 2, 3], [1, 2, 3]], L=3, users=[0, 1]))
    assert not torch.allclose(same[0, 1:], same[1, 1:])


# ---- padding and causality ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_padding_invariance(name):
    model = make(name).eval()
    history, other = [5, 2, 8, 8, 1], [4] * 12
    tight = model.score(padded_batch([history], L=5))
    loose = model.score(padded_batch([history, other], L=12))  # 7 more padding columns before history
    assert torch.allclose(tight[0, 1:], loose[0, 1:], atol=1e-5)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_padding_invariance_of_the_loss(name):
    model = make(name).eval()
    batch = padded_batch([[5, 2, 8, 8, 1]], L=5)
    batch.targets = torch.tensor([[2, 8, 8, 1, 7]])
    wide = padded_batch([[5, 2, 8, 8, 1]], L=9)
    wide.targets = torch.tensor([[0, 0, 0, 0, 2, 8, 8, 1, 7]])
    assert model.loss(batch)[0].item() == pytest.approx(model.loss(wide)[0].item(), abs=1e-5)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_training_output_at_t_equals_scoring_the_prefix(name):
    """Every-prefix training is causal: the representation trained at position t is what scoring s[:t+1] gives."""
    model = make(name).eval()
    seq = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    h = model.encode(torch.tensor([seq]), torch.tensor([2]))
    for t in range(len(seq)):
        prefix = model.score(padded_batch([seq[: t + 1]], L=12, users=[2]))
        assert torch.allclose(prefix, catalogue_scores(h[:, t], model.item_table()), atol=1e-5)


@pytest.mark.parametrize("name, reads_old_items", [("fossil", True), ("hgn", False), ("marank", False)])
def test_window_models_read_only_the_last_L_items(name, reads_old_items):
    model = make(name).eval()
    a = model.score(padded_batch([[1, 2, 3, 4, 5, 6, 7]], L=7))
    b = model.score(padded_batch([[9, 9, 11, 4, 5, 6, 7]], L=7))  # differs only before the last 4 items
    assert torch.allclose(a, b, atol=1e-6) != reads_old_items  # Fossil's similarity term reads the whole history


# ---- the equations on small tensors ---------------------------------------------------------------------------
def test_fossil_equation():
    torch.manual_seed(1)
    model = make("fossil", d=4, L=2, alpha=0.5).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
        model.P.weight[0].zero_()
    seq, u = [3, 7, 3, 5], 4  # item 3 repeats: the similarity set is {3, 7, 5}
    P, Q, beta = model.P.weight, model.Q.weight, model.beta.weight[:, 0]
    eta = model.eta + model.eta_u.weight[u]  # (eta_1 + eta_u1, eta_2 + eta_u2), eta_1 for the most recent item
    h = 3 ** -0.5 * (P[3] + P[7] + P[5]) + eta[0] * P[5] + eta[1] * P[3]
    scores = model.score(padded_batch([seq], L=4, users=[u]))
    assert torch.allclose(scores[0, 1:], (Q @ h + beta)[1:], atol=1e-5)
    # at the first position only one item is known and the order-2 slot is empty
    h0 = P[3] + eta[0] * P[3]
    assert torch.allclose(model.encode(torch.tensor([seq]), torch.tensor([u]))[0, 0, :-1], h0, atol=1e-5)


def test_hgn_equation():
    torch.manual_seed(2)
    model = make("hgn", d=4, L=3).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    seq, u = [6, 2, 9, 4], 1  # window = (2, 9, 4)
    E, W, b = model.item_in.weight, model.item_out.weight, model.bias.weight[:, 0]
    ue = model.user.weight[u]
    S = E[[2, 9, 4]]  # (L, d), oldest first
    SF = S * torch.sigmoid(S @ model.g1.weight.T + model.g2(ue))
    g = torch.sigmoid(SF @ model.g3.weight[0] + model.g4.weight @ ue)  # one gate per slot
    s = (g[:, None] * SF).sum(0) / g.sum()
    h = ue + s + S.sum(0)
    scores = model.score(padded_batch([seq], L=4, users=[u]))
    assert torch.allclose(scores[0, 1:], (W @ h + b)[1:], atol=1e-5)


@pytest.mark.parametrize("skip, squash", [(False, False), (True, False), (True, True)])
def test_marank_equation(skip, squash):
    torch.manual_seed(3)
    model = make("marank", d=4, L=2, n_orders=1, n_union=1, dropout=0.0, last_item_skip=skip, attention_sigmoid=squash).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    seq, u = [5, 8, 3], 2  # window = (8, 3)
    relu, tanh = torch.relu, torch.tanh
    squashed = torch.sigmoid if squash else (lambda x: x)  # the authors' code: softmax(sigmoid(logits))
    p0, m0 = model.user.weight[u], model.M.weight[[8, 3]]

    # the paper's formulas on the raw weight matrices (no module's forward is called)
    def res(layer, x):  # x^l = ReLU(x^{l-1} + W_l x^{l-1} + b_l)
        return relu(x + x @ layer.lin.weight.T + layer.lin.bias)

    def attend(att, m, p):  # a_k = softmax_k(v^T tanh(A m_k + B p + b)), e = sum_k a_k m_k
        logits = squashed(tanh(m @ att.A.weight.T + p @ att.B.weight.T + att.B.bias) @ att.v.weight[0])
        a = torch.exp(logits) / torch.exp(logits).sum()
        return (a[:, None] * m).sum(0)

    p1, m1 = res(model.user_res[0], p0), res(model.item_res[0], m0)
    e = torch.stack([attend(model.att[0], m0, p0) + (m0[-1] if skip else 0), attend(model.att[1], m1, p1)])  # skip: + m of item 3
    order_logits = squashed(tanh(e @ model.order_C.weight.T + model.order_C.bias) @ model.order_w.weight[0])  # b_l = softmax_l(w^T tanh(C e^l))
    b = torch.exp(order_logits) / torch.exp(order_logits).sum()
    e_c = (b[:, None] * e).sum(0)
    s = e_c + res(model.union[0], e_c)  # score_j = p_u . q_j + (e_c + h) . m_j
    expected = model.Q.weight @ p0 + model.M.weight @ s
    scores = model.score(padded_batch([seq], L=3, users=[u]))
    assert torch.allclose(scores[0, 1:], expected[1:], atol=1e-5)


def test_windows_helper():
    x = torch.tensor([[0, 1, 2, 3]])
    assert windows(x, 2).tolist() == [[[0, 0], [0, 1], [1, 2], [2, 3]]]
    e = torch.arange(8.0).view(1, 4, 2)
    assert windows(e, 3).shape == (1, 4, 3, 2) and windows(e, 3)[0, 3].tolist() == [[2, 3], [4, 5], [6, 7]]


# ---- DiffRec: diffusion formulas ---------------------------------------------------------------------------
@pytest.fixture
def diffusion():
    return Diffusion(T=6, schedule="linear-var", scale=1.0, lo=0.01, hi=0.3, beta_1=0.01)


def test_linear_var_schedule():
    lo, hi, scale, T = 0.01, 0.2, 0.5, 6
    d = Diffusion(T, "linear-var", scale, lo, hi, beta_1=scale * lo)  # without the fixed first step:
    ramp = torch.linspace(scale * lo, scale * hi, T, dtype=torch.float64)
    assert torch.allclose(1 - d.abar[1:].double(), ramp, atol=1e-6)  # 1 - abar_t is linear in t
    fixed = Diffusion(T, "linear-var", scale, lo, hi)  # the authors' fixed beta_1
    assert fixed.betas[1].item() == pytest.approx(1e-5) and fixed.betas[0] == 0 and fixed.abar[0] == 1
    assert (fixed.abar[1:] < fixed.abar[:-1]).all()  # more noise at every step
    # the schedule the models train with, written out as DiffRec defines it: variance v_i = linspace(scale lo,
    # scale hi, T), beta_1 = 1e-5 (fixed), beta_i = 1 - (1 - v_i) / (1 - v_{i-1}) for i >= 2 (the ML-1M setting)
    steps, noise_scale, noise_min, noise_max = 40, 0.005, 0.005, 0.01
    v = np.linspace(noise_scale * noise_min, noise_scale * noise_max, steps)
    betas = np.array([1e-5] + [1 - (1 - v[i]) / (1 - v[i - 1]) for i in range(1, steps)])
    used = Diffusion(steps, "linear-var", noise_scale, noise_min, noise_max)
    assert np.allclose(used.betas[1:].double().numpy(), betas, rtol=1e-5, atol=1e-12)
    assert np.allclose(used.abar[1:].double().numpy(), np.cumprod(1 - betas), rtol=0, atol=1e-7)
    lin = Diffusion(T, "linear", scale, lo, hi, beta_1=scale * lo)
    assert torch.allclose(lin.betas[1:].double(), ramp, atol=1e-7)
    with pytest.raises(ValueError, match="betas"):
        Diffusion(T, "linear-var", 0.0, lo, hi, beta_1=0.0)


def test_forward_noising(diffusion):
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
    noise = torch.randn_like(x0)
    t = torch.tensor([2, 6])
    a = diffusion.abar[t].unsqueeze(-1)
    assert torch.allclose(diffusion.q_sample(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-6)
    # statistics over many draws: mean sqrt(abar) x0, variance 1 - abar
    x = x0[:1].expand(20_000, -1)
    t = torch.full((20_000,), 6)
    xt = diffusion.q_sample(x, t, torch.randn_like(x))
    assert torch.allclose(xt.mean(0), diffusion.abar[6].sqrt() * x0[0], atol=0.02)
    assert torch.allclose(xt.var(0), (1 - diffusion.abar[6]).expand(4), rtol=0.05)


def test_posterior_with_exact_x0_returns_the_forward_marginal(diffusion):
    """E[mu(x_0, x_t)] over x_t ~ q(x_t | x_0) is sqrt(abar_{t-1}) x_0 and Var = 1 - abar_{t-1}."""
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.5]])
    for step in range(1, diffusion.T + 1):
        t = torch.tensor([step])
        a, a_prev = diffusion.abar[step], diffusion.abar[step - 1]
        mean, var = diffusion.posterior(x0, a.sqrt() * x0, t)  # x_t at its noiseless mean
        assert torch.allclose(mean, a_prev.sqrt() * x0, atol=1e-6)
        c_t = diffusion.post_ct[step]  # coefficient of x_t: its variance passes through squared
        assert (c_t**2 * (1 - a) + var).item() == pytest.approx((1 - a_prev).item(), rel=1e-4, abs=1e-7)
    # the last reverse step (t = 1) returns the predicted x_0 itself
    mean, var = diffusion.posterior(x0, torch.randn_like(x0), torch.tensor([1]))
    assert torch.allclose(mean, x0, atol=1e-6) and var.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("sampling_steps", [0, 2])
def test_reverse_chain_is_t_posterior_mean_steps_of_the_real_denoiser(sampling_steps):
    """DiffRec's inference written out: x = x_0 noised to T' (none when T' = 0), then for t = T..1
    x <- beta_t sqrt(abar_{t-1}) / (1 - abar_t) f(x, t) + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x,
    with the model's own (trained-shape, randomly initialised) denoiser f and coefficients from the betas."""
    torch.manual_seed(0)
    model = make("diffrec", steps=4, sampling_steps=sampling_steps).eval()
    x0 = model.interactions(torch.tensor([[0, 3, 5, 9], [1, 2, 3, 4]]))
    torch.manual_seed(5)
    with torch.no_grad():
        got = model.reverse(x0.clone())
    d = model.diffusion
    betas = d.betas.double()
    abar = torch.cumprod(1 - betas[1:], 0)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), abar])
    torch.manual_seed(5)  # the same draw for the starting noise
    x = x0.clone()
    if sampling_steps:
        x = abar[sampling_steps].sqrt().float() * x + (1 - abar[sampling_steps]).sqrt().float() * torch.randn_like(x)
    with torch.no_grad():
        for t in range(4, 0, -1):
            c0 = (betas[t] * abar[t - 1].sqrt() / (1 - abar[t])).float()
            ct = ((1 - abar[t - 1]) * (1 - betas[t]).sqrt() / (1 - abar[t])).float()
            x = c0 * model.net(x, torch.full((2,), t)) + ct * x
    assert torch.allclose(got, x, atol=1e-5)
    assert not torch.allclose(got, x0, atol=1e-2)  # an untrained denoiser does not return its input


def test_elbo_weights(diffusion):
    w = diffusion.elbo_weights
    snr = diffusion.abar / (1 - diffusion.abar)
    assert w[0] == 1 and torch.allclose(w[1:], (snr[1:-1] - snr[2:]).float(), rtol=1e-4)
    assert (w > 0).all()  # SNR falls with t
    model = make("diffrec")
    assert model.step_weights.mean().item() == pytest.approx(1.0)
    assert torch.equal(make("diffrec", reweight=False).step_weights, torch.ones(5))


def test_importance_sampling_prefers_high_loss_steps():
    model = make("diffrec")
    t, pt = model.sample_steps(64, "cpu")
    assert torch.equal(pt, torch.ones(64)) and t.min() >= 1 and t.max() <= 5  # uniform until every t has 10 losses
    steps = torch.arange(1, 6).repeat_interleave(12)
    model.record_losses(steps, steps.float() ** 2)  # loss grows with t
    assert (model.loss_count == 10).all() and torch.equal(model.loss_history[4], torch.full((10,), 25.0))
    t, pt = model.sample_steps(50_000, "cpu")
    counts = torch.bincount(t, minlength=6)[1:].float()
    assert (counts[1:] > counts[:-1]).all()  # sampled in proportion to sqrt(E[L_t^2]) = t^2
    assert (pt * counts.sum() / 5).allclose(counts[t - 1], rtol=0.1)  # correction = p_t * T
    plain = make("diffrec", importance_sampling=False)
    plain.record_losses(steps, steps.float() ** 2)
    assert torch.equal(plain.sample_steps(8, "cpu")[1], torch.ones(8))


def test_temporal_weights_increase_with_recency():
    model = make("diffrec", temporal=True, w_min=0.2, w_max=1.0)
    x = model.interactions(torch.tensor([[0, 0, 4, 2, 7, 1, 9]]))  # chronological: 4, 2, 7, 1, 9
    w = x[0, torch.tensor([4, 2, 7, 1, 9]) - 1]
    assert torch.allclose(w, torch.linspace(0.2, 1.0, 5))
    assert (w[1:] > w[:-1]).all() and x.sum() == pytest.approx(w.sum().item())
    wide = model.interactions(torch.tensor([[0, 0, 0, 0, 0, 4, 2, 7, 1, 9]]))
    assert torch.allclose(x, wide)  # padding does not shift the weights
    repeat = model.interactions(torch.tensor([[3, 5, 3]]))  # a repeated item keeps its most recent weight
    assert repeat[0, 2].item() == pytest.approx(1.0) and repeat[0, 4].item() == pytest.approx(0.6)
    plain = make("diffrec").interactions(torch.tensor([[0, 4, 2, 4]]))
    assert plain.sum() == 2 and plain[0, 3] == 1 and plain[0, 1] == 1


def test_diffrec_trains_on_the_whole_training_history():
    model = make("diffrec")
    batch = padded_batch([[1, 2, 3]], L=3)
    batch.targets = torch.tensor([[2, 3, 7]])
    seen, original = [], model.interactions
    model.interactions = lambda items: seen.append(items) or original(items)
    model.loss(batch)
    assert sorted(seen[0][seen[0] > 0].tolist()) == [1, 2, 3, 7]


# ---- learning end to end through the trainer ----------------------------------------------------------------
def _train(model, data, epochs, lr):
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=8, patience=epochs, device="cpu", progress=False, eval_batch_size=64)
    return train(model, data, toy_stats(data), cfg)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_learns_the_successor_pattern(name):
    """Item i is always followed by i + 1: after a short training the next item ranks at the top on test.
    (The trainer keeps the first epoch whose validation NDCG@10 peaks, before the training loss is ~0.)"""
    data = toy_dataset(n_users=16, n_items=16, min_len=6, max_len=12, pattern=True)
    model = make(name, data, d=16, **({"dropout": 0.0} if name == "marank" else {}))
    result = _train(model, data, epochs=25, lr=0.03)
    assert result.history[0]["loss"] > 2.0 and result.history[-1]["loss"] < 1.0
    test = evaluate(model, data, FeatureView.build(data, toy_stats(data)), data.split.test, ks=(3, 10)).mean()
    assert test["HR@3"] >= 0.9 and test["NDCG@10"] >= 0.85  # chance: HR@3 ~ 0.4


def cluster_dataset(n_users=48, n_clusters=3, per_cluster=8, length=6, seed=0) -> PreparedDataset:
    """Every user interacts with `length` random items of one cluster (random order): pure co-occurrence."""
    rng = np.random.default_rng(seed)
    seqs = [rng.choice(per_cluster, length, replace=False) + 1 + per_cluster * (u % n_clusters) for u in range(n_users)]
    lengths = np.full(n_users, length)
    n_items = n_clusters * per_cluster
    seq = Sequences(
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_ids=np.array(["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.concatenate(seqs).astype(np.int64),
        times=np.arange(n_users * length, dtype=np.int64) * 60,
    )
    users = np.arange(n_users)
    split = Split("loo", lengths - 2, np.stack([users, lengths - 2], 1), np.stack([users, lengths - 1], 1))
    return PreparedDataset(seq, split, {"hash": f"clusters-{seed}"})


@pytest.mark.parametrize("temporal, floor", [(False, 0.8), (True, 0.4)])  # random order: no recency signal to use
def test_diffrec_ranks_co_occurring_items_above_chance(temporal, floor):
    data = cluster_dataset()
    model = make("diffrec", data, dims=(32,), temporal=temporal)
    result = _train(model, data, epochs=40, lr=0.01)
    first, last = result.history[0]["mse"], min(r["mse"] for r in result.history)
    assert last < 0.5 * first
    # test: 3 unseen items of the user's cluster among 19 unseen candidates (chance HR@3 = 3/19)
    test = evaluate(model, data, FeatureView.build(data, toy_stats(data)), data.split.test, ks=(3,)).mean()
    assert test["HR@3"] >= floor
