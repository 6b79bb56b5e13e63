"""`difflsrec reproduce` end to end on a tiny subset of the real ml-100k file (CI-sized)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from model.artifact import load_artifact
from model.reproduce import ABLATION, ReproduceSpec, claims, improvement, plan
from tests.processes import kill_when


def test_plan_shares_identical_runs():
    spec = ReproduceSpec(seeds=[0, 1])
    parts = plan(spec)
    keys = {r.key for rows in parts.values() for _, r in rows}
    # 7 table-1 models + 4 extra ablation variants + 4 extra K values, per seed
    assert len(keys) == (7 + 4 + 4) * 2
    table1 = {r.key for label, r in parts["table1"] if label == "difflsrec"}
    k64 = {r.key for label, r in parts["k"] if label == "K=64"}
    full = {r.key for label, r in parts["ablation"] if label == "DiffLSRec"}
    assert table1 == k64 == full and len(table1) == 2  # the default-size full model is trained once per seed


def test_a_model_or_size_given_twice_is_one_row():
    """`--models gru4rec,gru4rec` counted one run twice: 'seeds 2' with a std of 0."""
    parts = plan(ReproduceSpec(seeds=[0], models=["gru4rec", "pop", "gru4rec"], k_values=[8, 8], parts=("table1", "k")))
    assert [label for label, _ in parts["table1"]] == ["gru4rec", "pop"] and [label for label, _ in parts["k"]] == ["K=8"]
    from model.cli import int_list, model_names

    assert model_names("gru4rec, gru4rec,pop") == ["gru4rec", "pop"] and int_list("8,16,8", "--k-values") == [8, 16]  # benchmark too


def test_the_run_count_in_a_log_follows_the_runs(monkeypatch, tmp_path, capsys):
    """Written to a file, the bar's line for each run said '0/3' to the end: tqdm takes in an iterated count
    only when it redraws, once a minute in a log."""
    import model.reproduce as reproduce
    from model.benchmark import ModelRun
    from model.evaluation import EvalResult, rank_metrics
    from tests.model.toy import toy_dataset

    data = toy_dataset(n_users=6)

    def fake_training(name, data, stats, features, overrides, cfg, **kw):
        ranks = np.arange(6)
        return ModelRun(name, cfg.seed, EvalResult(np.arange(6), ranks, rank_metrics(ranks, 10)), {"NDCG@10": 0.1}, 1, 1, 1.0, [1.0], {})

    monkeypatch.setattr(reproduce, "_train_and_test", fake_training)
    reproduce.reproduce(data, ReproduceSpec(seeds=[0, 1, 2], models=["gru4rec"], parts=("table1",), sampled_negatives=0), tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reproduce: gru4rec seed")]
    assert [line.split("|")[2].split()[0] for line in lines] == ["0/3", "1/3", "2/3", "3/3"], lines  # the last: the closed bar


def test_ablation_variants_take_the_full_models_overrides():
    """`--set difflsrec.d=16` shrank only the full model: the ablation compared d=16 with d=64 variants."""
    spec = ReproduceSpec(seeds=[0], parts=("table1", "ablation"), models=["difflsrec"],
                         overrides={"difflsrec": {"d": 16, "adaptive_guidance": True}, "difflsrec-gate": {"dropout": 0.3}})
    runs = dict(plan(spec)["ablation"])
    assert all(r.overrides["d"] == 16 for r in runs.values())
    assert "adaptive_guidance" not in runs["w/o SNR"].overrides and "adaptive_guidance" not in runs["w/o Both"].overrides  # their part
    assert runs["Gate fusion"].overrides["dropout"] == 0.3 and runs["DiffLSRec"].key == plan(spec)["table1"][0][1].key


def test_report_without_a_seed_shared_with_the_best_baseline(monkeypatch):
    """DiffLSRec on seed 1 only, the best baseline on seed 0 only (runs of other invocations, --no-train):
    no paired test is possible, and the report used to die with a KeyError."""
    from types import SimpleNamespace

    import model.reproduce as reproduce
    from model.benchmark import ModelRun
    from model.evaluation import EvalResult, rank_metrics

    monkeypatch.setattr(reproduce, "tied_target_share", lambda *a: 0.0)
    users = np.arange(5)

    def run(name, seed, ranks):
        test = EvalResult(users=users, ranks=np.array(ranks), per_example=rank_metrics(np.array(ranks), 10))
        return ModelRun(name, seed, test, {"NDCG@10": 0.1}, 1, 1, 1.0, [1.0], {})

    spec = ReproduceSpec(seeds=[0, 1], models=["gru4rec", "pop", "difflsrec"], parts=("table1",))
    parts = plan(spec)
    keys = {(r.model, r.seed): r.key for _, r in parts["table1"]}
    done = {keys["gru4rec", 0]: run("gru4rec", 0, [0, 1, 2, 3, 4]), keys["pop", 1]: run("pop", 1, [50] * 5),
            keys["difflsrec", 1]: run("difflsrec", 1, [5, 6, 7, 8, 9])}
    data = SimpleNamespace(hash="h", sequences=SimpleNamespace(n_users=5, n_items=60, n_interactions=50), split=SimpleNamespace(name="loo", test=None))
    report = reproduce.build_report(parts, done, data, spec, "toy", 1.0)
    assert "significance" not in report and set(report["paired_tests"]) == {"pop"}
    assert "| pop |" in reproduce.to_markdown(report)


def test_run_id_changes_with_everything_that_changes_the_result():
    from types import SimpleNamespace

    from model.reproduce import Run, run_id
    from model.training import TrainConfig

    data = SimpleNamespace(hash="abc")
    base = run_id(Run("sasrec", {}, 0), data, ReproduceSpec())
    assert base == run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(progress=False)))
    others = [
        run_id(Run("sasrec", {}, 1), data, ReproduceSpec()),
        run_id(Run("sasrec", {"d": 32}, 0), data, ReproduceSpec()),
        run_id(Run("hgn", {}, 0), data, ReproduceSpec()),
        run_id(Run("sasrec", {}, 0), SimpleNamespace(hash="abd"), ReproduceSpec()),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(epochs=7))),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(lr=1e-2))),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(sampled_negatives=50)),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(batching="random"))),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(loss_scale="batch"))),
        run_id(Run("sasrec", {}, 0), data, ReproduceSpec(train=TrainConfig(min_epochs=30))),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_run_ids_of_runs_cached_before_the_batching_setting_are_kept():
    """`batching` and `loss_scale` came after runs were cached with buckets and the plain batch mean: those
    settings are left out of the hash, so `--loss-scale batch` finds the old runs (this id is the one computed
    before the settings existed); the new default (`target`) trains new ones."""
    from types import SimpleNamespace

    from model.reproduce import Run, run_id
    from model.training import TrainConfig

    data, run = SimpleNamespace(hash="abc"), Run("sasrec", {}, 0)
    # patience 10 was the default then (now 20: a changed default trains new runs, like any other setting)
    assert run_id(run, data, ReproduceSpec(train=TrainConfig(loss_scale="batch", patience=10))) == "e5cfd345c2cd95f36b15d5c7"
    assert run_id(run, data, ReproduceSpec(train=TrainConfig(patience=10))) != "e5cfd345c2cd95f36b15d5c7"
    assert run_id(run, data, ReproduceSpec(train=TrainConfig(loss_scale="batch"))) != "e5cfd345c2cd95f36b15d5c7"


def test_improvement_and_claims_by_hand():
    rows = {"sasrec": {"HR@10": 0.2, "NDCG@10": 0.1, "MRR@10": 0.05, "Precision@10": 0.02},
            "gru4rec": {"HR@10": 0.25, "NDCG@10": 0.09, "MRR@10": 0.04, "Precision@10": 0.025},
            "difflsrec": {"HR@10": 0.3, "NDCG@10": 0.12, "MRR@10": 0.05, "Precision@10": 0.03}}
    imp = improvement(rows)
    assert imp["HR@10"]["best_baseline"] == "gru4rec" and imp["HR@10"]["relative"] == pytest.approx(0.2)
    assert imp["NDCG@10"]["best_baseline"] == "sasrec" and imp["NDCG@10"]["relative"] == pytest.approx(0.2)
    abl = {label: {"NDCG@10": v} for label, v in zip(ABLATION, [0.10, 0.09, 0.095, 0.08, 0.085])}
    c = claims(abl)
    assert c["token_helps"] and c["snr_helps"] and c["removing_both_hurts_most"] and c["diffusion_beats_gate"] and c["full_model_best"]
    abl["Gate fusion"]["NDCG@10"] = 0.2
    assert not claims(abl)["diffusion_beats_gate"]


@pytest.mark.slow
def test_reproduce_cli_on_tiny_ml100k(ml100k_file, isolated_home, tmp_path):
    out = tmp_path / "repro"
    tiny = ["--set", "difflsrec.d=16", "--set", "difflsrec.T=10", "--set", "diffrec.steps=5"]
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "2", "reproduce", "--input", str(ml100k_file), "--users", "40",
           "--seeds", "2", "--epochs", "1", "--k-values", "8,16", "--out", str(out), *tiny]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report["table1"]) == {"fossil", "marank", "gru4rec", "hgn", "sasrec", "diffrec", "difflsrec"}
    assert set(report["ablation"]) == set(ABLATION) and set(report["embedding_size"]) == {"K=8", "K=16"}
    for row in report["table1"].values():
        assert 0 <= row["HR@10"] <= row["sampled"]["HR@10"] + 1e-9  # sampled ranking can only be easier
        assert len(row["per_seed"]) == 2
    assert set(report["improvement"]["full"]) == {"HR@10", "NDCG@10", "MRR@10", "Precision@10"}
    assert "token_helps" in report["claims"]
    assert report["significance"]["seeds"] == [0, 1] and 0 <= report["significance"]["t_pvalue"] <= 1
    assert set(report["paired_tests"]) == {"fossil", "marank", "gru4rec", "hgn", "sasrec", "diffrec"}
    assert report["paired_tests"][report["significance"]["vs"]]["mean_diff"] == report["significance"]["mean_diff"]
    assert set(report["ablation_tests"]) == set(ABLATION) - {"DiffLSRec"}
    md = (out / "report.md").read_text()
    assert "Table 1 — full protocol" in md and "Improvement" in md
    assert report["pending"] == [] and "Not in this report" not in md
    assert 0.0 <= report["test_targets_tied_in_time"] <= 1.0 and "of the test targets share their timestamp" in md
    assert report["train_seconds_total"] > 0 and "min of training in all" in md
    for png in ("ablation.png", "embedding_size.png", "valid_curves.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert report["valid_curves_png"] == "valid_curves.png" and "![validation NDCG@10 per epoch](valid_curves.png)" in md

    # every run's best-validation model is kept as an artifact that evaluates to the run's validation score
    assert len(report["models"]) == 24 and "## Trained models (24)" in md
    (label,) = [label for label in report["models"] if label.startswith("difflsrec {'d': 16") and label.endswith("seed 1")]  # labels name --set overrides
    kept = load_artifact(out / report["models"][label])
    assert kept.manifest["model"] == "difflsrec" and kept.manifest["data_hash"] == report["data_hash"]
    check = subprocess.run([sys.executable, "-m", "difflsrec.cli", "evaluate", "--artifact", str(out / report["models"][label]),
                            "--input", str(ml100k_file), "--users", "40", "--on", "valid"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    assert f"NDCG@10        {kept.manifest['metrics']['valid']['NDCG@10']:.4f}" in check.stdout, check.stdout

    # the same command again resumes from DIR/runs: nothing is trained, the report is the same
    assert len(list((out / "runs").glob("*.npz"))) == (7 + 4 + 1) * 2
    assert not list((out / "runs").glob("*.checkpoint.pt"))  # training checkpoints go once their run is kept
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "24 of 24 runs already in" in again.stderr and "0 to train" in again.stderr
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["table1"]["difflsrec"]["per_seed"] == report["table1"]["difflsrec"]["per_seed"]
    assert resumed["claims"] == report["claims"]
    assert resumed["train_seconds_total"] == report["train_seconds_total"]  # cached runs keep their training time

    # --no-train reports what is there: a third seed asked for is listed as missing, not trained
    partial = subprocess.run([*cmd, "--seeds", "3", "--no-train"], capture_output=True, text=True, timeout=600)
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "reporting without 12 runs" in partial.stderr and " epoch   1  loss" not in partial.stdout
    partial_report = json.loads((out / "report.json").read_text())
    assert len(partial_report["table1"]["sasrec"]["per_seed"]) == 2
    # the report names what it lacks: seed 2 of every configuration, none of them started
    pending = partial_report["pending"]
    assert {p["model"] for p in pending} >= set(report["table1"]) and len({p["run"] for p in pending}) == 12
    assert len(pending) == 12 and all(p["seed"] == 2 and not p["training"] and "epoch" not in p for p in pending)
    assert "## Not in this report (12 runs)" in (out / "report.md").read_text() and "| sasrec seed 2 | not started |" in (out / "report.md").read_text()

    # --seed draws the --users subset too: seed 1 alone is other users (nothing cached); with --subset-seed 0
    # it is the same data, and the seed-1 runs trained above are found
    seed1 = [*cmd, "--seed", "1", "--seeds", "1", "--parts", "table1", "--no-train"]
    other_users = subprocess.run(seed1, capture_output=True, text=True, timeout=600)
    assert other_users.returncode == 0 and "0 of 7" not in other_users.stderr and "reporting without 7 runs" in other_users.stderr, other_users.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["data_hash"] != report["data_hash"]
    same_users = subprocess.run([*seed1, "--subset-seed", "0"], capture_output=True, text=True, timeout=600)
    assert same_users.returncode == 0 and "7 of 7 runs already in" in same_users.stderr, same_users.stderr[-3000:]
    again = json.loads((out / "report.json").read_text())
    assert again["data_hash"] == report["data_hash"] and again["seeds"] == [1]
    assert again["table1"]["sasrec"]["per_seed"] == report["table1"]["sasrec"]["per_seed"][1:]


@pytest.mark.slow
def test_a_reproduction_killed_mid_run_goes_on_from_its_last_epoch(ml100k_file, isolated_home, tmp_path):
    """SIGKILL while a run trains, then the same command: the run continues from its checkpoint (not from
    epoch 1) and the report equals that of a reproduction never interrupted."""
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "reproduce", "--input", str(ml100k_file), "--users", "60",
           "--seeds", "1", "--epochs", "5", "--patience", "50", "--parts", "table1", "--models", "sasrec", "--set", "sasrec.d=16"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], capture_output=True, text=True, timeout=600, env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    kill_when(proc, lambda: bool(list((out / "runs").glob("*.checkpoint.pt"))))
    # a report made meanwhile says where the killed run stands (its checkpoint), and that nothing trains it
    peek = subprocess.run([*cmd, "--out", str(out), "--no-train"], capture_output=True, text=True, timeout=600, env=env)
    assert peek.returncode == 0, peek.stderr[-2000:]
    [pending] = json.loads((out / "report.json").read_text())["pending"]
    assert pending["model"] == "sasrec" and not pending["training"] and 1 <= pending["epoch"] < 5 and 1 <= pending["best_epoch"] <= pending["epoch"]
    assert "interrupted: the same command resumes it" in (out / "report.md").read_text()
    # its validation curve so far, read from the checkpoint, is drawn (the only run: nothing else to draw)
    assert (out / "valid_curves.png").read_bytes()[:4] == b"\x89PNG"
    again = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sasrec: resuming after epoch" in again.stdout and "sasrec epoch   1  loss" not in again.stdout
    first, second = (json.loads((d / "report.json").read_text())["table1"]["sasrec"]["per_seed"] for d in (tmp_path / "whole", out))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]  # noqa: E731
    assert strip(second) == strip(first) and second[0]["epochs"] == 5
    assert not list((out / "runs").glob("*.checkpoint.pt")) and not list((out / "runs").glob("*.lock"))


def test_run_locks_are_taken_once_and_taken_over_from_dead_processes(tmp_path):
    import socket

    from model.reproduce import _claim

    run = tmp_path / "abc.npz"
    assert _claim(run)
    assert run.with_suffix(".lock").read_text() == f"{os.getpid()} {socket.gethostname()}"
    assert not _claim(run)  # held by a live process (this one)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.with_suffix(".lock").write_text(f"{dead.pid} {socket.gethostname()}")
    assert _claim(run)  # its owner is gone: taken over
    run.with_suffix(".lock").write_text(f"{dead.pid} some-other-host")
    assert not _claim(run)  # another machine's process: left alone


@pytest.mark.slow
def test_two_invocations_on_one_dir_share_the_runs(ml100k_file, isolated_home, tmp_path):
    out = tmp_path / "shared"
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "reproduce", "--input", str(ml100k_file), "--users", "40",
           "--seeds", "2", "--epochs", "2", "--parts", "table1", "--models", "fossil,gru4rec,hgn,sasrec,diffrec", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    logs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in logs]
    trained = [line for text in logs for line in "".join(text).replace("\r", "\n").splitlines() if " epoch   1  loss" in line]
    assert len(trained) == 5 * 2, trained  # every (model, seed) trained exactly once between the two
    assert not list((out / "runs").glob("*.lock"))
    report = json.loads((out / "report.json").read_text())
    assert {name: len(row["per_seed"]) for name, row in report["table1"].items()} == dict.fromkeys(["fossil", "gru4rec", "hgn", "sasrec", "diffrec"], 2)


@pytest.mark.slow
def test_a_run_locked_by_a_live_process_is_left_to_it_and_taken_over_when_it_dies(ml100k_file, isolated_home, tmp_path):
    import socket

    from difflsrec.settings import DEFAULT_PATIENCE
    from model.cli import load_dataset, train_config
    from model.data.formats import ReadOptions
    from model.reproduce import ReproduceSpec, Run, run_id

    out = tmp_path / "locked"
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "reproduce", "--input", str(ml100k_file), "--users", "40",
           "--seeds", "2", "--epochs", "1", "--parts", "table1", "--models", "fossil,sasrec", "--out", str(out)]
    data = load_dataset([ml100k_file], ReadOptions(), 5, 40, 0, "loo")
    spec = ReproduceSpec(seeds=[0, 1], train=train_config(1, DEFAULT_PATIENCE, None, 128, "auto", 0, None))  # the command's
    lock = out / "runs" / f"{run_id(Run('sasrec', {}, 1), data, spec)}.lock"
    lock.parent.mkdir(parents=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        lock.write_text(f"{owner.pid} {socket.gethostname()}")
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert first.returncode == 0, first.stderr[-2000:]
        assert "1 runs are still being trained by other invocations (sasrec seed 1)" in first.stderr
        report = json.loads((out / "report.json").read_text())
        assert [r["seed"] for r in report["table1"]["sasrec"]["per_seed"]] == [0]
        assert [(p["run"], p["training"]) for p in report["pending"]] == [("sasrec seed 1", True)]
        assert lock.exists()  # not ours to remove
    finally:
        owner.kill()
        owner.wait()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "3 of 4 runs already in" in second.stderr and "sasrec epoch   1  loss" in second.stdout
    report = json.loads((out / "report.json").read_text())
    assert sorted(r["seed"] for r in report["table1"]["sasrec"]["per_seed"]) == [0, 1] and not lock.exists()


def test_validation_curves_come_from_run_files_and_checkpoints(tmp_path):
    """Finished runs give their history; an unfinished one its checkpoint's; a run with neither is left out."""
    from types import SimpleNamespace

    from model.reproduce import Run, _unfinished_checkpoints, validation_curves

    runs = {r.key: r for r in (Run("sasrec", {}, 0), Run("sasrec", {}, 1), Run("gru4rec", {"d": 8}, 0))}
    keys = list(runs)
    history = [{"epoch": 1, "valid_NDCG@10": 0.1}, {"epoch": 2, "valid_NDCG@10": 0.3}, {"epoch": 3, "valid_NDCG@10": 0.2}]
    done = {keys[0]: SimpleNamespace(history=history, best_epoch=2)}
    paths = {key: tmp_path / f"{n}.npz" for n, key in enumerate(keys)}
    ckpt = {"format": 1, "fingerprint": "f", "model_name": "sasrec",
            "progress": json.dumps({"epoch": 1, "best_epoch": 1, "best_score": 0.05, "stale": 0, "seconds": 9.0, "history": [{"epoch": 1, "valid_NDCG@10": 0.05}]})}
    import torch

    torch.save(ckpt, paths[keys[1]].with_suffix(".checkpoint.pt"))
    curves = validation_curves(runs, done, _unfinished_checkpoints(runs, done, paths))
    assert [(c["config"], c["seed"], c["finished"], c["best_epoch"]) for c in curves] == [("sasrec", 0, True, 2), ("sasrec", 1, False, 1)]
    assert curves[0]["points"] == [(1, 0.1), (2, 0.3), (3, 0.2)] and curves[1]["points"] == [(1, 0.05)]


def test_seed_averaged_pairs_users_across_seeds_whatever_their_order():
    from model.evaluation import EvalResult, seed_averaged

    a = EvalResult(users=np.array([3, 1, 2]), ranks=np.array([0, 4, 20]), per_example={"NDCG@10": np.array([1.0, 0.4, 0.0])})
    b = EvalResult(users=np.array([1, 2, 3]), ranks=np.array([2, 0, 1]), per_example={"NDCG@10": np.array([0.5, 1.0, 0.6])})
    avg = seed_averaged([a, b])
    assert avg.users.tolist() == [1, 2, 3]
    assert avg.per_example["NDCG@10"] == pytest.approx([0.45, 0.5, 0.8])
    assert avg.ranks.tolist() == [3.0, 10.0, 0.5]
    with pytest.raises(ValueError):
        seed_averaged([a, EvalResult(users=np.array([1, 2, 4]), ranks=np.zeros(3), per_example={"NDCG@10": np.zeros(3)})])


def test_an_interrupted_run_is_in_the_report_with_its_checkpoint(monkeypatch, tmp_path):
    """Ctrl-C during a run left the report written before it began: "not started", though its checkpoint
    held epochs. The report is rewritten on the way out."""
    import json

    import model.reproduce as reproduce
    from model import checkpoint as checkpoints
    from model.training import TrainConfig
    from tests.model.toy import toy_dataset

    real_save = checkpoints.save

    def save_then_interrupt(path, fp, state, *args, **kw):
        real_save(path, fp, state, *args, **kw)
        if state.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save", save_then_interrupt)
    spec = ReproduceSpec(seeds=[0], models=["gru4rec"], parts=("table1",), sampled_negatives=5,
                         train=TrainConfig(epochs=4, progress=False, device="cpu"), overrides={"gru4rec": {"d": 8}})
    with pytest.raises(KeyboardInterrupt):
        reproduce.reproduce(toy_dataset(n_users=10, seed=1), spec, tmp_path)
    (pending,) = json.loads((tmp_path / "report.json").read_text())["pending"]
    assert pending["model"] == "gru4rec" and pending["epoch"] == 2 and not pending["training"]
    assert "interrupted" in (tmp_path / "report.md").read_text()
