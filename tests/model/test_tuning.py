"""Validation tuning: the same budget for every model, defaults first, the test split never used."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from model import registry
from model.batching import FeatureView
from model.benchmark import run_benchmark
from model.evaluation import evaluate
from model.registry import available, get
from model.training import TrainConfig, recorded_result, seed_everything, train, train_discarding_foreign
from model.tuning import candidates, search_curves, trial_checkpoint, tune
from tests.model.toy import toy_dataset, toy_stats


def test_every_trainable_model_declares_a_search_space():
    for name in available():
        cls = get(name)
        if cls.trainable:
            assert cls.search_space, name
            assert all(len(v) >= 2 for v in cls.search_space.values()), name


def test_candidates_are_distinct_seeded_and_start_with_defaults():
    a = candidates("sasrec", trials=5, seed=0)
    assert a[0] == {} and len(a) == 5 and len({json.dumps(c, sort_keys=True) for c in a}) == 5
    assert a == candidates("sasrec", trials=5, seed=0) and a != candidates("sasrec", trials=5, seed=1)
    fixed = candidates("sasrec", trials=50, seed=0, fixed={"dropout": 0.5})
    assert all("dropout" not in c for c in fixed)
    assert candidates("pop", trials=4, seed=0) == [{}]


def test_tune_picks_the_best_validation_trial_and_never_touches_test():
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    stats = toy_stats(data)
    features = FeatureView.build(data, stats)
    # a test split no evaluation can read (a user that does not exist): any use of it by tuning raises
    data.split.test = np.array([[10**6, 0]], np.int64)
    with pytest.raises(IndexError):
        evaluate(registry.build("gru4rec", data.sequences.n_items, stats, {"d": 8}), data, features, data.split.test)  # the poison works
    best, trials = tune("gru4rec", data, stats, features, trials=3, train_cfg=TrainConfig(epochs=2, progress=False), fixed={"d": 8})
    assert len(trials) == 3 and best["d"] == 8
    top = max(trials, key=lambda t: t.valid["NDCG@10"])
    assert best == {"d": 8, **top.overrides}
    assert len({json.dumps(t.overrides, sort_keys=True) for t in trials}) == 3 and all(t.valid["NDCG@10"] > 0 for t in trials)


def test_benchmark_records_tuning(tmp_path):
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    results = run_benchmark(data, ["gru4rec", "pop"], tmp_path, [0], TrainConfig(epochs=2, progress=False), overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False)
    t = results["results"]["gru4rec"]["tuning"]
    assert len(t["trials"]) == 2 and t["chosen"]["d"] == 8 and t["budget"] == {"trials": 2, "epochs": 1}
    assert results["results"]["gru4rec"]["config"]["d"] == 8
    assert len(results["results"]["pop"]["tuning"]["trials"]) == 1


def test_a_rerun_reuses_a_finished_search_and_searches_again_under_another_budget(tmp_path, monkeypatch):
    """The trials keep no checkpoints: an interrupted --tune benchmark searched every model again before its
    resumable final runs. The search is kept per model in out/tuning/ and reused under the same budget."""
    import model.tuning

    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    cfg = TrainConfig(epochs=2, progress=False)
    first = run_benchmark(data, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False)
    assert (tmp_path / "tuning" / "gru4rec.json").is_file()

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(model.tuning, "tune", no_search)  # run_benchmark imports it from there at each call
    again = run_benchmark(data, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False)
    assert again["results"]["gru4rec"]["tuning"] == first["results"]["gru4rec"]["tuning"]
    for changed in ({"tune_epochs": 2}, {"tune_trials": 3}, {"overrides": {"gru4rec": {"d": 12}}}):
        kwargs = {"overrides": {"gru4rec": {"d": 8}}, "tune_trials": 2, "tune_epochs": 1, **changed}
        with pytest.raises(AssertionError, match="searched again"):
            run_benchmark(data, ["gru4rec"], tmp_path, [0], cfg, save_models=False, **kwargs)


def test_a_search_on_other_data_is_not_reused(tmp_path, monkeypatch, caplog):
    """The folder's data check reads results.json, written only when a model's first run ended: a search
    interrupted before that was reused on other data. The tuning record names its data now."""
    import model.tuning

    cfg = TrainConfig(epochs=1, progress=False)
    first = toy_dataset(n_users=20, n_items=10, pattern=True)
    run_benchmark(first, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False, checkpoints=False)
    assert json.loads((tmp_path / "tuning" / "gru4rec.json").read_text())["data"] == first.hash
    (tmp_path / "results.json").unlink()  # as if stopped before the first final run ended

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(model.tuning, "tune", no_search)
    other = toy_dataset(n_users=24, n_items=10, pattern=True, seed=5)
    assert other.hash != first.hash
    with pytest.raises(AssertionError, match="searched again"):
        run_benchmark(other, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False, checkpoints=False)
    assert "was on other data" in caplog.text
    # the same data still reuses it
    run_benchmark(first, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=2, tune_epochs=1, save_models=False, checkpoints=False)


def test_no_trial_repeats_the_defaults():
    """MARank's grid holds its defaults (L 5, dropout 0.2): the search trained them twice, one trial of six wasted."""
    for name in available():
        if not get(name).trainable:
            continue
        picked = candidates(name, trials=100, seed=0)
        configs = [registry.make_config(name, c) for c in picked]
        assert len(configs) == len({json.dumps(dataclasses.asdict(c), sort_keys=True, default=str) for c in configs}), name
    marank = candidates("marank", trials=100, seed=0)
    assert {"L": 5, "dropout": 0.2} not in marank and len(marank) == 1 + 3 * 3 - 1
    fixed = candidates("marank", trials=100, seed=0, fixed={"dropout": 0.3})  # the defaults are now L 5 at dropout 0.3
    assert {"L": 5} not in fixed and len(fixed) == 3


def test_successive_halving_continues_the_better_half_and_picks_from_the_last_rung(tmp_path):
    """Five configurations, budget 1 epoch, three rungs: all five train 1 epoch, the best three go on to 2,
    the best two of those to 4. Each survivor continues its own checkpoint, so it ends exactly where one
    uninterrupted run of that length ends; the choice is the better of the last two."""
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    stats = toy_stats(data)
    features = FeatureView.build(data, stats)
    cfg = TrainConfig(epochs=1, patience=10, progress=False)
    fixed = {"d": 8}
    _, flat = tune("gru4rec", data, stats, features, trials=5, train_cfg=cfg, fixed=fixed)  # the first rung alone
    best, trials = tune("gru4rec", data, stats, features, trials=5, train_cfg=cfg, fixed=fixed, rungs=3, checkpoints=tmp_path)
    assert [t.overrides for t in trials] == [t.overrides for t in flat] and len(list(tmp_path.glob("gru4rec-*.pt"))) == 5

    def key(t):
        return json.dumps(t.overrides, sort_keys=True)

    by_rung0 = [key(t) for t in sorted(flat, key=lambda t: -t.valid["NDCG@10"])]
    reached = {key(t): (t.rung, t.epochs) for t in trials}
    assert sorted(reached.values()) == [(0, 1), (0, 1), (1, 2), (2, 4), (2, 4)]
    assert {k for k, (rung, _) in reached.items() if rung >= 1} == set(by_rung0[:3])
    last = [t for t in trials if t.rung == 2]
    assert best == {**fixed, **max(last, key=lambda t: t.valid["NDCG@10"]).overrides}
    for t in trials:  # the first rung's results are those of the flat search
        if t.rung == 0:
            assert t.valid == next(f.valid for f in flat if key(f) == key(t))

    # a survivor's 4 epochs in three sittings = one run of 4 epochs from scratch
    survivor = last[0]
    seed_everything(0)
    fresh = train(registry.build("gru4rec", data.sequences.n_items, stats, {**fixed, **survivor.overrides}), data, stats, dataclasses.replace(cfg, epochs=4), features)
    assert fresh.best_valid == pytest.approx(survivor.valid) and fresh.best_epoch == survivor.best_epoch

    # run again on the same folder: the kept states give the same search, and nothing is trained again (the
    # first rungs' results come from the trials' histories; their checkpoints are neither retrained nor rewritten)
    written = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("gru4rec-*.pt")}
    again_best, again = tune("gru4rec", data, stats, features, trials=5, train_cfg=cfg, fixed=fixed, rungs=3, checkpoints=tmp_path)
    assert again_best == best and [(t.valid, t.epochs, t.best_epoch) for t in again] == [(t.valid, t.epochs, t.best_epoch) for t in trials]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("gru4rec-*.pt")} == written
    with pytest.raises(ValueError, match="rungs"):
        tune("gru4rec", data, stats, features, trials=2, train_cfg=cfg, fixed=fixed, rungs=0)


@pytest.mark.parametrize("name", ["gru4rec", "marank", "hgn", "fossil"])  # the last three size per-user tables when fitted
def test_a_search_interrupted_in_a_later_rung_resumes_without_retraining_its_earlier_rungs(tmp_path, name):
    """A halving search stopped while its last rung was under way (one survivor already at 4 epochs, the other
    at 2), run again: the rung-1 result of the survivor that went on is read from its history (training would
    refuse its checkpoint as past the 2-epoch stop and start it over), so its file is left as it was, and the
    search ends as an uninterrupted one."""
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    stats = toy_stats(data)
    features = FeatureView.build(data, stats)
    cfg = TrainConfig(epochs=1, patience=10, progress=False)
    fixed = {"d": 8}
    whole_best, whole = tune(name, data, stats, features, trials=4, train_cfg=cfg, fixed=fixed, rungs=3, checkpoints=tmp_path / "whole")

    folder = tmp_path / "interrupted"
    tune(name, data, stats, features, trials=4, train_cfg=cfg, fixed=fixed, rungs=2, checkpoints=folder)  # rungs 0 and 1 done
    ahead = next(t for t in whole if t.rung == 2)  # one survivor went on to its 4 epochs before the stop
    seed_everything(0)
    model = registry.build(name, data.sequences.n_items, stats, {**fixed, **ahead.overrides})
    path = trial_checkpoint(folder, name, fixed, ahead.overrides)
    train(model, data, stats, dataclasses.replace(cfg, epochs=4), features, checkpoint=path)
    kept = (path.stat().st_mtime_ns, path.read_bytes())

    best, trials = tune(name, data, stats, features, trials=4, train_cfg=cfg, fixed=fixed, rungs=3, checkpoints=folder)
    assert (path.stat().st_mtime_ns, path.read_bytes()) == kept
    assert best == whole_best
    assert [(t.overrides, t.rung, t.epochs, t.best_epoch) for t in trials] == [(t.overrides, t.rung, t.epochs, t.best_epoch) for t in whole]
    for t, w in zip(trials, whole):
        assert t.valid == pytest.approx(w.valid)


def test_recorded_result_is_what_training_to_that_budget_returns(tmp_path):
    """A 4-epoch run's checkpoint answers for budgets of 1-3 epochs exactly as runs of that length would (best
    epoch, its validation metrics, epochs run); for its own length and beyond, or another run's settings, it
    does not answer (training continues or refuses)."""
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    stats = toy_stats(data)
    features = FeatureView.build(data, stats)
    cfg = TrainConfig(epochs=4, patience=10, progress=False)
    path = tmp_path / "run.pt"
    seed_everything(0)
    train(registry.build("gru4rec", data.sequences.n_items, stats, {"d": 8}), data, stats, cfg, features, checkpoint=path)
    model = registry.build("gru4rec", data.sequences.n_items, stats, {"d": 8})
    for epochs in (1, 2, 3):
        seed_everything(0)
        short = train(registry.build("gru4rec", data.sequences.n_items, stats, {"d": 8}), data, stats, dataclasses.replace(cfg, epochs=epochs), features)
        recorded = recorded_result(model, data, dataclasses.replace(cfg, epochs=epochs), path, features)
        assert (recorded.best_epoch, recorded.epochs_run) == (short.best_epoch, short.epochs_run)
        assert recorded.best_valid == pytest.approx(short.best_valid)
    assert recorded_result(model, data, cfg, path, features) is None
    assert recorded_result(model, data, dataclasses.replace(cfg, epochs=8), path, features) is None
    assert recorded_result(model, data, dataclasses.replace(cfg, epochs=2, lr=0.5), path, features) is None  # another run
    assert recorded_result(registry.build("gru4rec", data.sequences.n_items, stats, {"d": 4}), data, dataclasses.replace(cfg, epochs=2), path, features) is None
    assert recorded_result(model, data, dataclasses.replace(cfg, epochs=2), tmp_path / "none.pt", features) is None


@pytest.mark.parametrize("name", ["marank", "gru4rec"])
def test_a_discarded_checkpoint_leaves_the_run_a_fresh_one_would_be(tmp_path, name):
    """A foreign checkpoint (another learning rate's) is deleted and the run starts afresh: the same run, weights
    and all, as training without it. The refused attempt had fitted the model's statistics already; for MARank
    that draws its user table from the random stream, and training on the same model again drew nothing and
    then differed (its dropout masks came from another point of the stream)."""
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    stats = toy_stats(data)
    features = FeatureView.build(data, stats)
    cfg = TrainConfig(epochs=2, patience=10, progress=False)
    path = tmp_path / "run.pt"
    seed_everything(0)
    train(registry.build(name, data.sequences.n_items, stats, {"d": 8}), data, stats, dataclasses.replace(cfg, lr=0.5), features, checkpoint=path)
    seed_everything(0)
    fresh_model = registry.build(name, data.sequences.n_items, stats, {"d": 8})
    fresh = train(fresh_model, data, stats, cfg, features)
    seed_everything(0)
    model = registry.build(name, data.sequences.n_items, stats, {"d": 8})
    again = train_discarding_foreign(model, data, stats, cfg, features, path)
    assert again.best_valid == fresh.best_valid and again.best_epoch == fresh.best_epoch
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh_model.state_dict().values()))


def test_benchmark_records_the_rungs_and_keeps_the_trials_states(tmp_path):
    data = toy_dataset(n_users=20, n_items=10, pattern=True)
    cfg = TrainConfig(epochs=2, progress=False)
    results = run_benchmark(data, ["gru4rec"], tmp_path, [0], cfg, overrides={"gru4rec": {"d": 8}}, tune_trials=3, tune_epochs=1, tune_rungs=2, save_models=False)
    t = results["results"]["gru4rec"]["tuning"]
    assert t["budget"] == {"trials": 3, "epochs": 1, "rungs": 2}
    assert sorted((trial["rung"], trial["epochs"]) for trial in t["trials"]) == [(0, 1), (1, 2), (1, 2)]
    assert len(list((tmp_path / "tuning" / "checkpoints").glob("gru4rec-*.pt"))) == 3
    # every trial's validation curve, read back from its checkpoint, drawn into tuning/search.png
    curves = search_curves("gru4rec", t, {"d": 8}, tmp_path / "tuning" / "checkpoints")
    assert sorted(len(c["points"]) for c in curves) == sorted(trial["epochs"] for trial in t["trials"])
    assert [c["chosen"] for c in curves].count(True) == 1
    chosen = next(c for c in curves if c["chosen"])
    trial = next(x for x in t["trials"] if {"d": 8, **x["overrides"]} == t["chosen"])
    assert max(v for _, v in chosen["points"]) == pytest.approx(trial["valid"]["NDCG@10"])
    assert results["tuning_plot"] == "tuning/search.png" and (tmp_path / "tuning" / "search.png").stat().st_size > 10_000
    assert "(tuning/search.png)" in (tmp_path / "results.md").read_text()
