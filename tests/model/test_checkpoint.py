"""Resumable training (model/checkpoint.py): a run interrupted after any epoch and started again ends with the
weights, history and best epoch of the run that was never interrupted; checkpoints of other runs are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import registry
from model.batching import FeatureView
from model.checkpoint import CheckpointError, best_weights, describe, validation_curve
from model.training import TrainConfig, seed_everything, train
from tests.model.toy import toy_dataset, toy_stats
from tests.processes import kill_when

DATA = toy_dataset(n_users=24, n_items=12, min_len=6, max_len=16, seed=3)
STATS = toy_stats(DATA)
# small and quick, each drawing on every random state a checkpoint must carry: dropout and diffusion noise
# (torch), the batch order (the batches' generator), DiffRec's loss history (a non-persistent buffer that
# switches its step sampling to importance sampling once full: 2 steps x 10 losses, reached in epoch 1)
MODELS = {
    "difflsrec": {"d": 16, "T": 20, "inference_steps": 2},
    "sasrec": {"d": 16, "n_blocks": 1},
    "gru4rec": {"d": 16, "hidden": 16},
    "diffrec": {"steps": 2},
}


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 5, "device": "cpu", "progress": False, "seed": 7, "patience": 50, **kw})


def _train(name: str, cfg: TrainConfig, checkpoint: Path | None = None):
    seed_everything(cfg.seed)
    model = registry.build(name, DATA.sequences.n_items, STATS, MODELS[name])
    result = train(model, DATA, STATS, cfg, FeatureView.build(DATA, STATS), checkpoint=checkpoint)
    return model, result


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _assert_same_run(a, b) -> None:
    (model_a, res_a), (model_b, res_b) = a, b
    for (name, x), (_, y) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    for (name, x), (_, y) in zip(model_a.named_buffers(), model_b.named_buffers(), strict=True):
        assert torch.equal(x, y), name
    assert _without_seconds(res_a.history) == _without_seconds(res_b.history)
    assert (res_a.best_epoch, res_a.best_valid, res_a.epochs_run) == (res_b.best_epoch, res_b.best_valid, res_b.epochs_run)


@pytest.mark.parametrize("name", list(MODELS))
def test_an_interrupted_run_ends_as_the_uninterrupted_one(name, tmp_path):
    whole = _train(name, _cfg(), tmp_path / "whole.pt")
    ckpt = tmp_path / "ckpt.pt"
    first = _train(name, _cfg(epochs=2), ckpt)  # "killed" after epoch 2: its checkpoint is all that is kept
    assert first[1].epochs_run == 2 and ckpt.exists()
    resumed = _train(name, _cfg(), ckpt)
    _assert_same_run(resumed, whole)  # the best weights, the history (losses of epochs 3-4 included)
    assert len(resumed[1].epoch_seconds) == 4  # the first invocation's epochs are still accounted for
    # the last epoch's weights, Adam's moments and the random states agree too, not only the best epoch's
    a, b = torch.load(ckpt, weights_only=True), torch.load(tmp_path / "whole.pt", weights_only=True)
    for key in ("model", "buffers"):
        assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["rng"]["batches"] == b["rng"]["batches"]


def test_a_finished_run_continues_under_a_larger_patience(tmp_path):
    # patience 1 stops the toy run early; patience 50 from scratch and 1-then-50 resumed must agree
    ckpt = tmp_path / "ckpt.pt"
    short = _train("sasrec", _cfg(epochs=30, patience=1), ckpt)
    assert short[1].epochs_run < 30
    again = _train("sasrec", _cfg(epochs=30, patience=1), ckpt)  # the same command again: nothing left to do
    _assert_same_run(again, short)
    assert again[1].epochs_run == short[1].epochs_run
    longer = _train("sasrec", _cfg(epochs=30, patience=50), ckpt)
    assert longer[1].epochs_run == 30
    _assert_same_run(longer, _train("sasrec", _cfg(epochs=30, patience=50)))


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _train("sasrec", _cfg(epochs=1), ckpt)
    with pytest.raises(CheckpointError, match="another run"):
        _train("sasrec", _cfg(epochs=2, lr=0.01), ckpt)
    with pytest.raises(CheckpointError, match="another run"):
        _train("gru4rec", _cfg(epochs=2), ckpt)
    with pytest.raises(CheckpointError, match="another run"):
        _train("sasrec", _cfg(epochs=2, seed=8), ckpt)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        _train("sasrec", _cfg(epochs=1), ckpt)


def test_a_checkpoint_past_where_these_settings_stop_is_refused(tmp_path):
    """A 4-epoch checkpoint rerun with --epochs 2 (or a patience that stops it sooner) used to return the
    4-epoch weights and best epoch, reported under the smaller cap; the same or larger settings go on."""
    ckpt = tmp_path / "ckpt.pt"
    whole = _train("sasrec", _cfg(epochs=4), ckpt)
    seed_everything(7)
    model = registry.build("sasrec", DATA.sequences.n_items, STATS, MODELS["sasrec"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="stop it after epoch 2"):
        train(model, DATA, STATS, _cfg(epochs=2), FeatureView.build(DATA, STATS), checkpoint=ckpt)
    # refused before anything was loaded: a caller that catches it (bootstrap) starts from its own weights
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    history = whole[1].history
    scores = [row["valid_NDCG@10"] for row in history]
    first_stale = next((row["epoch"] for row, prev in zip(history[1:], scores) if row["valid_NDCG@10"] <= max(scores[: row["epoch"] - 1])), None)
    if first_stale is not None and first_stale < 4:  # patience 1 would have stopped at that epoch
        with pytest.raises(CheckpointError, match=f"stop it after epoch {first_stale}"):
            _train("sasrec", _cfg(epochs=4, patience=1), ckpt)
    _assert_same_run(_train("sasrec", _cfg(epochs=4), ckpt), whole)  # the same settings: nothing left to do


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"patience": 0}, {"patience": -1}, {"batch_size": 0}, {"lr": -1.0}, {"max_minutes": 0}, {"min_epochs": -1}])
def test_settings_under_which_nothing_trains_are_refused(bad):
    """epochs 0 or patience <= 0 stopped before the first epoch: the untrained model was written and scored."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_checkpoints_load_without_unpickling_objects(tmp_path):
    # everything in it is a tensor or a plain value: torch.load(weights_only=True) reads it back
    ckpt = tmp_path / "ckpt.pt"
    _train("difflsrec", _cfg(epochs=1), ckpt)
    payload = torch.load(ckpt, weights_only=True)
    assert payload["fingerprint"] and payload["optimizer"]["state"]
    assert not list(tmp_path.glob("*.tmp"))  # written to a temporary file and renamed


def test_describe_reads_a_checkpoint_without_its_model(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    model, result = _train("gru4rec", _cfg(epochs=3), ckpt)
    d = describe(ckpt)
    assert d["model"] == "gru4rec" and d["epoch"] == 3 and d["best_epoch"] == result.best_epoch
    weights, same = best_weights(ckpt)  # one read: the best weights and the same description
    assert same == d and weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())  # train() ends on the best weights
    assert _without_seconds(d["history"]) == _without_seconds(result.history)
    assert d["best_score"] == pytest.approx(max(row["valid_NDCG@10"] for row in result.history))
    assert validation_curve(ckpt) == [(row["epoch"], row["valid_NDCG@10"]) for row in result.history]
    ckpt.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        describe(ckpt)
    assert validation_curve(ckpt) == [] and validation_curve(tmp_path / "none.pt") == []  # a plot goes on without it


def test_train_command_killed_mid_run_resumes(tmp_path, ml100k_file):
    """The user's path: `difflsrec train` SIGKILLed after a few epochs, then the same command again, ends with
    the test metrics of a run that was never interrupted."""
    args = [
        sys.executable, "-m", "difflsrec.cli", "--threads", "1", "train", "--input", str(ml100k_file), "--users", "150",
        "--model", "sasrec", "--set", "d=16", "--set", "n_blocks=1", "--epochs", "6", "--patience", "50",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def run(out: Path) -> str:
        done = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()[-2]  # "test  {...}"

    whole = run(tmp_path / "whole")
    out = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ckpt = out / "checkpoint.pt"
    kill_when(proc, ckpt.exists)
    killed_after = json.loads(torch.load(ckpt, weights_only=True)["progress"])["epoch"]
    assert 1 <= killed_after < 6 and not (out / "manifest.json").exists()  # it really died mid-run
    assert run(out) == whole

    # the same OUT with another setting: refused in one line with what to do, and --no-resume starts over
    other = subprocess.run([*args, "--out", str(out), "--lr", "0.01"], capture_output=True, text=True, env=env, timeout=600)
    assert other.returncode == 1 and "is the checkpoint of another run" in other.stderr and "--no-resume" in other.stderr
    assert "Traceback" not in other.stderr
    fresh = subprocess.run([*args, "--out", str(out), "--lr", "0.01", "--epochs", "1", "--no-resume"], capture_output=True, text=True, env=env, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert json.loads(torch.load(ckpt, weights_only=True)["progress"])["epoch"] == 1


def test_time_left_ranges_from_an_early_stop_to_the_cap():
    from model.checkpoint import TrainingProgress
    from model.training import time_left

    run = TrainingProgress(epoch=30, stale=3, epoch_seconds=[10.0] * 25 + [140.0] * 5)  # the last five epochs set the pace
    assert time_left(run, TrainConfig(epochs=200, patience=20), 0) == "left 40min (no better epoch) to 6.6h (cap)"
    assert time_left(run, TrainConfig(epochs=200, patience=20, max_minutes=80), 4000) == "left 16min"  # 800 s + the epoch crossing it
    assert time_left(run, TrainConfig(epochs=200, patience=20, max_minutes=60), 4000) == "done"
    assert time_left(run, TrainConfig(epochs=30), 0) == "done"
    assert time_left(TrainingProgress(epoch=30, stale=20, epoch_seconds=[1.0]), TrainConfig(patience=20), 0) == "done"
    assert time_left(TrainingProgress(epoch=5, stale=5, epoch_seconds=[1.0]), TrainConfig(patience=5, min_epochs=30), 0) == "left 25s (no better epoch) to 3min (cap)"


def test_config_fields_added_later_keep_the_older_checkpoints_at_their_old_values():
    """MARank's last_item_skip (off at first) and attention_sigmoid came after MARank checkpoints had been written:
    a checkpoint hashed without them, or (code of 2026-12-07) without attention_sigmoid only, is the same run as
    the config with both at their old values and still resumes; at another value it is another run."""
    import dataclasses
    from types import SimpleNamespace

    from model.baselines.marank import Config
    from model.checkpoint import accepted_fingerprints, fingerprint

    def without(*names):
        fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(Config) if f.name not in names]
        return dataclasses.make_dataclass("Config", fields)

    cfg = _cfg(epochs=1)

    def fp(config):
        return fingerprint(SimpleNamespace(name="marank", config=config), "data", cfg, 1e-3)

    def accepted(config):
        return accepted_fingerprints(SimpleNamespace(name="marank", config=config), "data", cfg, 1e-3)

    first_marank = without("last_item_skip", "attention_sigmoid")()  # computed without the skip, without the sigmoid
    no_sigmoid_field = without("attention_sigmoid")  # the form written by the code of 2026-12-07
    assert fp(Config()) in accepted(Config())  # what is written is accepted
    assert fp(first_marank) in accepted(Config(last_item_skip=False))
    assert fp(no_sigmoid_field(last_item_skip=False)) in accepted(Config(last_item_skip=False))
    assert fp(no_sigmoid_field()) in accepted(Config())  # the skip on (the default now)
    assert fp(first_marank) not in accepted(Config())  # the skip is on: another model
    assert accepted(Config(attention_sigmoid=True)) == {fp(Config(attention_sigmoid=True))}
    assert fp(no_sigmoid_field()) not in accepted(Config(attention_sigmoid=True))
    assert len({fp(Config()), fp(Config(last_item_skip=False)), fp(Config(attention_sigmoid=True))}) == 3
    # any other model: only its own fingerprint
    gru = registry.build("gru4rec", DATA.sequences.n_items, STATS, MODELS["gru4rec"])
    assert accepted_fingerprints(gru, "data", cfg, 1e-3) == {fingerprint(gru, "data", cfg, 1e-3)}


def test_a_checkpoint_written_before_a_config_field_existed_resumes(tmp_path):
    """The user's path: a MARank checkpoint whose fingerprint hashed the config of before last_item_skip and
    attention_sigmoid resumes under the config with both off, and is refused with the skip on."""
    import dataclasses

    from model.baselines.marank import Config
    from model.checkpoint import _digest

    ckpt = tmp_path / "ckpt.pt"
    small = {"d": 8, "L": 2, "last_item_skip": False}

    def run(epochs, config):
        seed_everything(7)
        model = registry.build("marank", DATA.sequences.n_items, STATS, config)
        return model, train(model, DATA, STATS, _cfg(epochs=epochs), FeatureView.build(DATA, STATS), checkpoint=ckpt)

    _, whole = run(3, small)
    ckpt.unlink()
    model, _ = run(2, small)  # its config as trained (fitted to the data: n_users, max_len)
    payload = torch.load(ckpt, weights_only=True)
    old_config = {k: v for k, v in dataclasses.asdict(model.config).items() if k not in ("last_item_skip", "attention_sigmoid")}
    assert isinstance(model.config, Config)
    payload["fingerprint"] = _digest("marank", old_config, DATA.hash, _cfg(epochs=3), model.default_lr)
    torch.save(payload, ckpt)
    with pytest.raises(CheckpointError, match="another run"):
        run(3, {**small, "last_item_skip": True})
    _, resumed = run(3, small)
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)  # epochs 1-2 from the checkpoint
