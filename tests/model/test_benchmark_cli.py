"""End to end: `difflsrec benchmark` on the real ml-100k file, one short epoch per model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from model.artifact import load_artifact
from model.data.prepare import tied_targets_sentence

MODELS = ["difflsrec", "sasrec", "gru4rec", "pop"]


@pytest.mark.slow
def test_benchmark_end_to_end_on_ml100k(ml100k_file, isolated_home, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "difflsrec.cli", "--threads", "2", "benchmark",
        "--input", str(ml100k_file), "--models", ",".join(MODELS), "--users", "120", "--epochs", "1",
        "--out", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    for key in ("dataset", "n_users", "n_items", "n_interactions", "split", "results"):
        assert key in results
    assert results["split"] == "loo" and 100 <= results["n_users"] <= 120
    assert set(results["results"]) == set(MODELS)
    for name in MODELS:
        r = results["results"][name]
        for metric in ("HR@10", "NDCG@10", "MRR@10", "Precision@10"):
            assert 0.0 <= r[metric] <= 1.0
        assert r["Precision@10"] == pytest.approx(r["HR@10"] / 10)
        assert r["MRR@10"] <= r["NDCG@10"] <= r["HR@10"]
        assert r["epochs"] == (0 if name == "pop" else 1)
        assert r["train_seconds"] > 0
    # with no --lr each model trains at its own learning rate, and the results say which
    assert results["results"]["difflsrec"]["config"]["lr"] == 3e-3 and results["results"]["sasrec"]["config"]["lr"] == 1e-3
    # the popularity floor is reached by a trained model, and every model left a loadable artifact
    assert results["results"]["pop"]["HR@10"] > 0
    art = load_artifact(out / "models" / "difflsrec" / "seed0")
    assert art.manifest["data_hash"] == results["data_hash"] and len(art.item_ids) == results["n_items"] + 1
    assert "| difflsrec |" in (out / "results.md").read_text()
    # ml-100k stores seconds and users rate in bursts: a large share of test targets tie with their
    # predecessor, and the report says so
    assert 0.2 < results["test_targets_tied_in_time"] < 0.7
    assert tied_targets_sentence(results["test_targets_tied_in_time"]) in (out / "results.md").read_text()

    # every trained run left its checkpoint: the same command again trains nothing and gives the same numbers
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(f"{m}-seed0.pt" for m in MODELS if m != "pop")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert " epoch   1  loss" not in again.stdout and again.stdout.count("resuming after epoch 1") == len(MODELS) - 1
    rerun = json.loads((out / "results.json").read_text())["results"]
    same = ("HR@10", "NDCG@10", "MRR@10", "epochs", "best_epoch")
    for name in MODELS:
        assert {k: rerun[name][k] for k in same} == {k: results["results"][name][k] for k in same}


def test_an_explicit_learning_rate_applies_to_every_model(ml100k_file, isolated_home, tmp_path):
    from model.batching import FeatureView
    from model.benchmark import fit_features, train_and_test
    from model.cli import train_config
    from model.data.prepare import PrepareOptions, prepare

    data = prepare(ml100k_file, PrepareOptions(users=40, seed=0), cache_dir=tmp_path / "cache")
    stats = fit_features(data)
    features = FeatureView.build(data, stats)
    for lr, expected in ((None, 3e-3), (5e-4, 5e-4)):
        run = train_and_test("difflsrec", data, stats, features, {}, train_config(1, 1, lr, 64, "cpu", 0, None))
        assert run.config["lr"] == expected


def test_weight_decay_reaches_the_optimiser_and_shrinks_the_weights(ml100k_file, isolated_home, tmp_path):
    """`--weight-decay` (train_config's weight_decay) is Adam's L2 term on every parameter: the same run with a
    large decay ends with a smaller weight norm, and a negative decay is refused before any data is read."""
    import torch

    from model.batching import FeatureView
    from model.benchmark import fit_features
    from model.cli import train_config
    from model.data.prepare import PrepareOptions, prepare
    from model.registry import build
    from model.training import train

    data = prepare(ml100k_file, PrepareOptions(users=40, seed=0), cache_dir=tmp_path / "cache")
    stats = fit_features(data)
    features = FeatureView.build(data, stats)
    norms = {}
    for decay in (0.0, 0.1):
        model = build("gru4rec", data.sequences.n_items, stats)
        train(model, data, stats, train_config(1, 1, 1e-2, 64, "cpu", 0, None, weight_decay=decay), features)
        norms[decay] = torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters())).item()
    assert norms[0.1] < 0.95 * norms[0.0]
    with pytest.raises(ValueError, match="weight_decay"):
        train_config(1, 1, None, 64, "cpu", 0, None, weight_decay=-1e-4)


@pytest.mark.parametrize(
    "args, option, named",
    [
        (["benchmark", "--models", "sasrec,sasrec-ce"], "--models", "'sasrec-ce'"),
        (["benchmark", "--set", "sasrec.dropuot=0.2"], "--set", "'dropuot'"),
        (["benchmark", "--set", "sasrecx.dropout=0.2"], "--set", "'sasrecx'"),
        (["train", "--model", "nope"], "--model", "'nope'"),
        (["train", "--model", "sasrec,gru4rec"], "--model", "one model, got 2"),
        (["train", "--model", "sasrec", "--set", "foo=1"], "--set", "'foo'"),
        (["reproduce", "--models", "fossil,hgnn"], "--models", "'hgnn'"),
        (["reproduce", "--parts", "table1,abalation"], "--parts", "'abalation'"),
        (["reproduce", "--set", "difflsrec.D=8"], "--set", "'D'"),
        (["reproduce", "--k-values", "8,sixteen"], "--k-values", "'8,sixteen'"),
    ],
)
def test_a_mistyped_model_part_or_override_fails_before_the_data_is_read(args, option, named, tmp_path):
    """The input does not exist: the option's error must come first, not after minutes of preparing data
    (or, for an override, never: a --set for an unknown model used to be ignored)."""
    from typer.testing import CliRunner

    from model.cli import app

    result = CliRunner().invoke(app, [*args, "--input", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")])
    message = " ".join(result.output.split())  # rich wraps the box's lines
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in message and named in message, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, option, named",
    [
        (["reproduce", "--seeds", "0"], "--seeds", "must be >= 1"),
        (["benchmark", "--seeds", "0"], "--seeds", "must be >= 1"),
        (["benchmark", "--tune", "3", "--tune-rungs", "0"], "--tune-rungs", "must be >= 1"),
        (["reproduce", "--k-values", "8,0"], "--k-values", "positive"),
        (["reproduce", "--sampled-negatives", "0"], "--sampled-negatives", "must be >= 1"),
    ],
)
def test_a_count_out_of_range_fails_before_the_data_is_read(args, option, named, tmp_path):
    """--seeds 0 wrote an empty report, --sampled-negatives 0 a table of NaN, --k-values 0 failed only when
    its run came up, after the runs before it."""
    test_a_mistyped_model_part_or_override_fails_before_the_data_is_read(args, option, named, tmp_path)
