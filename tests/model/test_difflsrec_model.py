"""DiffLSRec as a whole: losses, variants, determinism, the streaming code path, artifacts, learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.artifact import ArtifactError, load_artifact, save_artifact
from model.batching import FeatureView, TrainBatches, eval_batches
from model.evaluation import evaluate
from model.nn.short_term import last_window
from model.registry import available, build
from model.training import TrainConfig, step_loss, train
from tests.model.toy import toy_dataset, toy_stats

VARIANTS = ["difflsrec", "difflsrec-no-token", "difflsrec-no-snr", "difflsrec-no-both", "difflsrec-gate"]
SMALL = {"d": 16, "short_len": 4, "n_tokens": 3, "T": 10, "denoiser_hidden": 32}


@pytest.fixture(scope="module")
def data():
    return toy_dataset(n_users=10, n_items=9)


def _model(name, data, **over):
    torch.manual_seed(0)
    return build(name, data.sequences.n_items, toy_stats(data), {**SMALL, **over})


def _first_batch(data, model):
    stats = model.stats
    return next(iter(TrainBatches(data, FeatureView.build(data, stats), batch_size=8)))


def test_all_variants_registered():
    assert set(VARIANTS) <= set(available())


@pytest.mark.parametrize("name", VARIANTS)
def test_loss_is_finite_and_reaches_every_trained_part(name, data):
    model = _model(name, data)
    loss, logs = model.loss(_first_batch(data, model))
    assert torch.isfinite(loss) and "ce" in logs
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["item_emb.weight"].abs().sum() > 0
    assert grads["long.decay.weight"].abs().sum() > 0 and grads["short.gru.weight_hh_l0"].abs().sum() > 0
    if name == "difflsrec-gate":
        assert "denoise" not in logs and grads["gate.weight"].abs().sum() > 0
        return
    assert logs["denoise"] > 0
    assert grads["eps_net.ff.0.weight"].abs().sum() > 0
    if model.config.adaptive_guidance:  # u and b0 learn through the CE path's guided predictions
        assert grads["guidance.u_norms"].abs().sum() > 0 and grads["guidance.b0"].abs().sum() > 0
    if model.config.token_enhancement:
        assert grads["condition.W_Q.weight"].abs().sum() > 0 and grads["condition.W_g.weight"].abs().sum() > 0


@pytest.mark.parametrize("ce_path", ["chain", "x0", "both"])
def test_ce_paths_reach_the_parameters(ce_path, data):
    model = _model("difflsrec", data, ce_path=ce_path)
    loss, logs = model.loss(_first_batch(data, model))
    loss.backward()
    assert torch.isfinite(loss) and logs["ce"] > 0
    assert model.eps_net.ff[0].weight.grad.abs().sum() > 0 and model.guidance.b0.grad.abs().sum() > 0


def test_ce_paths_compute_what_they_say(data):
    """"chain": CE of the served reverse chain's output; "x0": CE of the guided (3.7) estimate at a random t;
    "both": their sum. The loss is CE + lambda_diff * L_denoise (C.5). Dropout off (eval) so that only the
    seeded draws of t and noise differ between calls; "chain" with train_noise="zero" draws nothing."""
    from model.losses import catalogue_ce
    from model.nn.short_term import sliding_windows

    logs = {}
    for path in ("chain", "x0", "both"):
        model = _model("difflsrec", data, ce_path=path, lambda_diff=0.3).eval()
        batch = _first_batch(data, model)
        torch.manual_seed(11)
        loss, logs[path] = model.loss(batch)
        assert loss.item() == pytest.approx(logs[path]["ce"] + 0.3 * logs[path]["denoise"], rel=1e-5)
    # x0 then the denoising loss draw in the same order under "x0" and "both": same draws, same values
    assert logs["both"]["ce"] == pytest.approx(logs["chain"]["ce"] + logs["x0"]["ce"], rel=1e-5)
    assert logs["both"]["denoise"] == pytest.approx(logs["x0"]["denoise"], rel=1e-6)
    # the chain's CE, recomputed from the parts: every target position's prefix state through reverse()
    model = _model("difflsrec", data, ce_path="chain").eval()
    keep = batch.targets > 0
    with torch.no_grad():
        e_long = model.encode_long(batch)[keep]
        e_short, tokens, mask = model.encode_short(sliding_windows(batch.items, model.config.short_len)[keep])
        e_user = model.reverse(e_long, e_short, tokens, mask, model.config.inference_steps, "zero")
        assert catalogue_ce(e_user, model.item_emb.weight, batch.targets[keep]).item() == pytest.approx(logs["chain"]["ce"], rel=1e-5)


def test_l2_regulariser_covers_projection_gate_and_feedforward(data):
    model = _model("difflsrec", data, lambda_diff=0.0)
    names = {id(p) for p in model.regularised_parameters()}
    c = model.condition
    for p in (c.W_Q.weight, c.W_K.weight, c.W_V.weight, c.W_g.weight, model.eps_net.ff[0].weight):
        assert id(p) in names
    batch = _first_batch(data, model)
    torch.manual_seed(1)
    with_reg = _model("difflsrec", data, lambda_diff=0.0, lambda_reg=0.37)
    torch.manual_seed(5)
    data_loss, logs = with_reg.loss(batch)
    assert abs(data_loss.item() - logs["ce"]) < 1e-5  # lambda_diff 0: the data loss is the CE alone
    # (C.6) over W_Q, W_K, W_V, W_g and the noise network's three feed-forward layers, listed by hand
    c, ff = with_reg.condition, with_reg.eps_net.ff
    by_hand = [c.W_Q.weight, c.W_K.weight, c.W_V.weight, c.W_g.weight, ff[0].weight, ff[3].weight, ff[5].weight]
    assert {id(w) for w in with_reg.regularised_parameters()} == {id(w) for w in by_hand}
    reg = sum((w**2).sum() for w in by_hand)
    assert with_reg.penalty().item() == pytest.approx(0.37 * reg.item(), rel=1e-5)
    assert _model("difflsrec-gate", data).penalty() is None and _model("difflsrec", data, lambda_reg=0.0).penalty() is None


def test_the_l2_penalty_is_not_rescaled_with_the_batch(data):
    """The trainer weighs the data loss by a batch's targets (loss_scale="target"); C.6's L2 is a property of
    the weights, so a step adds it once, unscaled, whatever the batch holds."""
    model = _model("difflsrec", data, lambda_diff=0.0, lambda_reg=1.0)
    model.eval()  # no dropout: the data loss is the same on every call
    batch = _first_batch(data, model)
    torch.manual_seed(5)
    data_loss = model.loss(batch)[0].item()
    penalty = model.penalty().item()
    for scale in (0.25, 1.0, 3.0):
        torch.manual_seed(5)
        loss, logs = step_loss(model, batch, scale)
        assert loss.item() == pytest.approx(scale * data_loss + penalty, rel=1e-5)
        assert logs["penalty"] == pytest.approx(penalty, rel=1e-6)


def test_denoise_loss_is_noise_mse(data):
    """With p_uncond = 1 the condition is always the null vector, so L_denoise can be recomputed by hand."""
    model = _model("difflsrec", data, p_uncond=1.0)
    e_long, e_short = torch.randn(6, 16), torch.randn(6, 16)
    tokens, mask = torch.randn(6, 3, 16), torch.ones(6, 3, dtype=torch.bool)
    torch.manual_seed(3)
    got = model._denoise_loss(e_long, e_short, tokens, mask)
    torch.manual_seed(3)
    t = torch.randint(1, 11, (6,))
    eps = torch.randn(6, 16)
    e_t = model.schedule.q_sample(e_long, t, eps)
    expected = ((eps - model.eps_net(e_t, t, None)) ** 2).sum(-1).mean()
    assert torch.allclose(got, expected, atol=1e-5)


def test_denoise_loss_with_the_condition_and_with_null_draws(data):
    """(C.5) with c_t = condition(e_t, e_short, S_short) (p_uncond = 0), and the mix: each row's condition is
    replaced by the null one where its uniform draw falls below p_uncond."""
    e_long, e_short = torch.randn(6, 16), torch.randn(6, 16)
    tokens, mask = torch.randn(6, 3, 16), torch.ones(6, 3, dtype=torch.bool)
    for p_uncond in (0.0, 0.5):
        model = _model("difflsrec", data, p_uncond=p_uncond)
        with torch.no_grad():
            model.eps_net.null_condition.normal_()  # the null condition differs from every c_t
        torch.manual_seed(3)
        got = model._denoise_loss(e_long, e_short, tokens, mask)
        torch.manual_seed(3)
        t = torch.randint(1, 11, (6,))
        eps = torch.randn(6, 16)
        drop = torch.rand(6, 1) < p_uncond
        e_t = model.schedule.q_sample(e_long, t, eps)
        c = model.condition(e_t, e_short, tokens, mask)
        c = torch.where(drop, model.eps_net.null_condition.expand_as(c), c)
        expected = ((eps - model.eps_net(e_t, t, c)) ** 2).sum(-1).mean()
        assert torch.allclose(got, expected, atol=1e-5)
        if p_uncond == 0.5:
            assert 0 < drop.sum() < 6  # both kinds of rows present in this draw
        unconditional = ((eps - model.eps_net(e_t, t, None)) ** 2).sum(-1).mean()
        assert not torch.allclose(got, unconditional, atol=1e-3)


@pytest.mark.parametrize("name", VARIANTS)
def test_scores_are_deterministic_in_eval_and_padding_is_ignored(name, data):
    model = _model(name, data).eval()
    fv = FeatureView.build(data, model.stats)
    batch, _, _ = next(eval_batches(data, fv, data.split.test, batch_size=4))
    s1, s2 = model.score(batch), model.score(batch)
    assert torch.equal(s1, s2)
    assert torch.all(s1[:, 0] == float("-inf"))
    # the same histories with 5 more columns of left padding score the same
    pad = lambda x: torch.nn.functional.pad(x, (5, 0))  # noqa: E731
    padded = type(batch)(pad(batch.items), pad(batch.intervals), pad(batch.freqs), batch.lengths, batch.users)
    assert torch.allclose(model.score(padded)[:, 1:], s1[:, 1:], atol=1e-5)


@pytest.mark.parametrize("name", ["difflsrec", "difflsrec-gate"])
def test_streaming_path_equals_offline_scores(name, data):
    """The worker's path (one long_step per event, then fuse on the last-n window) gives the offline scores."""
    model = _model(name, data).eval()
    stats = model.stats
    fv = FeatureView.build(data, stats)
    seq = data.sequences
    batch, _, _ = next(eval_batches(data, fv, data.split.test, batch_size=16))
    offline = model.score(batch)
    with torch.no_grad():
        for row, u in enumerate(batch.users.tolist()):
            n = int(data.split.test[data.split.test[:, 0] == u][0, 1])
            items, times = seq.user_items(u)[:n], seq.user_times(u)[:n]
            h = torch.zeros(1, model.config.d)
            prev = None
            for item, ts in zip(items, times):
                dt = stats.sequence_intervals(np.array([prev if prev is not None else ts, ts]))[1:] if prev is not None else np.zeros(1, np.float32)
                h = model.long_step(h, torch.tensor([item]), torch.from_numpy(dt), torch.from_numpy(stats.frequency_bucket([item])))
                prev = ts
            window = last_window(torch.as_tensor(items).unsqueeze(0), model.config.short_len)
            e_user = model.fuse(h, window)
            online = e_user @ model.item_emb.weight.T
            assert torch.allclose(online[0, 1:], offline[row, 1:], atol=1e-4)


def test_artifact_round_trip_and_checksum(tmp_path, data):
    model = _model("difflsrec", data).eval()
    manifest = save_artifact(tmp_path / "a", model, model.stats, data.sequences.item_ids, data_hash=data.hash, split="loo", metrics={"valid": {"NDCG@10": 0.1}})
    art = load_artifact(tmp_path / "a")
    assert art.version == manifest["version"] and art.item_ids[0] == "<pad>"
    fv = FeatureView.build(data, model.stats)
    batch, _, _ = next(eval_batches(data, fv, data.split.test, batch_size=8))
    assert torch.equal(model.score(batch), art.model.score(batch))
    assert json.loads((tmp_path / "a" / "config.json").read_text())["config"]["d"] == 16
    (tmp_path / "a" / "items.json").write_text(json.dumps(["<pad>"] + ["x"] * 9))
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize("name", ["difflsrec", "difflsrec-gate"])
def test_learns_a_deterministic_next_item_pattern(name):
    """Item i is always followed by i+1: a few epochs must rank the right next item near the top."""
    data = toy_dataset(n_users=40, n_items=12, min_len=8, max_len=16, pattern=True)
    stats = toy_stats(data)
    torch.manual_seed(0)
    model = build(name, data.sequences.n_items, stats, {**SMALL, "dropout": 0.0})
    before = evaluate(model, data, FeatureView.build(data, stats), data.split.valid).mean()["HR@10"]
    result = train(model, data, stats, TrainConfig(epochs=40, lr=1e-2, patience=40, progress=False, batch_size=16))
    test = evaluate(model, data, FeatureView.build(data, stats), data.split.test, ks=(1, 10)).mean()
    assert result.best_valid["NDCG@10"] > 0.6
    assert test["HR@1"] > 0.6, (before, test)


@pytest.mark.parametrize(("min_epochs", "stops_at"), [(0, 3), (6, 6)])
def test_early_stopping_waits_for_min_epochs(min_epochs, stops_at):
    """With a learning rate of 0 the validation score never improves after epoch 1: patience 2 stops the run
    at epoch 3, unless min_epochs holds it longer."""
    data = toy_dataset(n_users=20, n_items=10, min_len=5, max_len=8)
    torch.manual_seed(0)
    model = build("gru4rec", data.sequences.n_items, toy_stats(data), {"d": 8})
    cfg = TrainConfig(epochs=20, lr=0.0, patience=2, min_epochs=min_epochs, progress=False, batch_size=8)
    result = train(model, data, toy_stats(data), cfg)
    assert (result.epochs_run, result.best_epoch) == (stops_at, 1)
