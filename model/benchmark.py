"""``difflsrec benchmark``: prepare one dataset, train every requested model on the same split, evaluate
all of them with the same full-ranking code on the same test examples, and write results.json/.md.

The test split is touched exactly once per trained model, after training has picked its best epoch on
validation. Seeds are reported individually and as mean +- std; per-user metrics give bootstrap
confidence intervals and a paired test of DiffLSRec against the best baseline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from difflsrec.files import write_atomic
from model.artifact import save_artifact
from model.batching import FeatureView
from model.data.dataset import PreparedDataset
from model.data.prepare import tied_target_share, tied_targets_sentence
from model.evaluation import EvalResult, evaluate, paired_test, seed_averaged
from model.features import FeatureStats
from model.histories import UserHistories
from model.registry import build, get
from model.training import TrainConfig, seed_everything, train

log = logging.getLogger(__name__)

KEY_METRICS = ("HR@10", "NDCG@10", "MRR@10", "Precision@10")


@dataclass
class FeatureOptions:
    interval_transform: str = "log1p"
    freq_transform: str = "log1p"
    n_freq_buckets: int = 32


def fit_features(data: PreparedDataset, opts: FeatureOptions | None = None) -> FeatureStats:
    opts = opts or FeatureOptions()
    seq = data.sequences
    return FeatureStats.fit(seq.items, seq.times, seq.offsets, data.split.train_len, seq.n_items, **dataclasses.asdict(opts))


@dataclass
class ModelRun:
    model: str
    seed: int
    test: EvalResult
    valid: dict[str, float]
    best_epoch: int
    epochs: int
    train_seconds: float
    epoch_seconds: list[float]
    config: dict
    history: list[dict] = field(default_factory=list)
    test_sampled: EvalResult | None = None  # the sampled protocol, when asked for (reproduce)


def train_and_test(name: str, data: PreparedDataset, stats: FeatureStats, features: FeatureView, overrides: dict, train_cfg: TrainConfig, ks=(10,), filter_seen: bool = True, save_dir: Path | None = None, sampled_negatives: int | None = None, checkpoint: Path | None = None) -> ModelRun:
    seed_everything(train_cfg.seed)  # model initialisation depends on the seed too
    model = build(name, data.sequences.n_items, stats, overrides)
    result = train(model, data, stats, train_cfg, features, checkpoint=checkpoint)
    device = next(iter(model.parameters()), torch.zeros(0)).device
    test = evaluate(model, data, features, data.split.test, ks=ks, filter_seen=filter_seen, batch_size=train_cfg.eval_batch_size, device=device)
    sampled = None
    if sampled_negatives:
        sampled = evaluate(model, data, features, data.split.test, ks=ks, batch_size=train_cfg.eval_batch_size, device=device, sampled_negatives=sampled_negatives, seed=train_cfg.seed)
    if save_dir is not None:
        # a servable model carries its users' recent histories: the worker starts them from those (model/histories.py)
        histories = UserHistories.from_sequences(data.sequences) if hasattr(model, "long_step") else None
        save_artifact(save_dir, model.cpu(), stats, data.sequences.item_ids, data_hash=data.hash, split=data.split.name, metrics={"valid": result.best_valid}, extra={"data_options": data.meta.get("options"), "data_content": data.content_hash}, histories=histories)
    config = {**dataclasses.asdict(model.config), "lr": result.lr}  # the learning rate is part of what was run
    return ModelRun(name, train_cfg.seed, test, result.best_valid, result.best_epoch, result.epochs_run, result.train_seconds, result.epoch_seconds, config, result.history, sampled)


def summarise(runs: list[ModelRun]) -> dict:
    """Mean, std over seeds, bootstrap CI over users (each user's values averaged over the seeds first) and
    per-seed details."""
    means = [r.test.mean() for r in runs]
    keys = list(means[0])
    out: dict = {k: float(np.mean([m[k] for m in means])) for k in keys}
    out["std"] = {k: float(np.std([m[k] for m in means], ddof=1)) if len(runs) > 1 else 0.0 for k in keys}
    # resampling users, not (user, seed) pairs: a user's seeds are not independent examples, and pooling them
    # made the interval ~sqrt(seeds) too narrow (as the paired tests, which average per user the same way)
    out["ci95"] = {k: list(v) for k, v in seed_averaged([r.test for r in runs]).bootstrap_ci().items()}
    out["train_seconds"] = float(np.mean([r.train_seconds for r in runs]))
    out["epochs"] = float(np.mean([r.epochs for r in runs]))
    out["best_epoch"] = float(np.mean([r.best_epoch for r in runs]))
    all_epochs = [s for r in runs for s in r.epoch_seconds]
    out["seconds_per_epoch_median"] = float(statistics.median(all_epochs)) if all_epochs else 0.0
    out["valid"] = {k: float(np.mean([r.valid.get(k, 0.0) for r in runs])) for k in runs[0].valid}
    out["config"] = runs[0].config
    if all(r.test_sampled is not None for r in runs):
        sampled = [r.test_sampled.mean() for r in runs]
        out["sampled"] = {k: float(np.mean([m[k] for m in sampled])) for k in keys}
        out["sampled_std"] = {k: float(np.std([m[k] for m in sampled], ddof=1)) if len(runs) > 1 else 0.0 for k in keys}
    out["per_seed"] = [{"seed": r.seed, **r.test.mean(), "valid": r.valid, "best_epoch": r.best_epoch, "epochs": r.epochs, "train_seconds": r.train_seconds} for r in runs]
    return out


def run_benchmark(
    data: PreparedDataset,
    models: list[str],
    out: Path,
    seeds: list[int],
    train_cfg: TrainConfig,
    overrides: dict[str, dict] | None = None,
    feature_opts: FeatureOptions | None = None,
    ks=(10,),
    filter_seen: bool = True,
    dataset_name: str | None = None,
    save_models: bool = True,
    tune_trials: int = 0,
    tune_epochs: int = 10,
    checkpoints: bool = True,
    tune_rungs: int = 1,
) -> dict:
    """Train and test every model; with ``tune_trials`` each model first gets the same search budget on
    validation (``tune_trials`` configurations of ``tune_epochs`` epochs, and with ``tune_rungs`` > 1 the
    better half of them twice as long, and so on: model/tuning.py). With ``checkpoints`` each run's training
    state is kept in ``out/checkpoints/`` and each trial's in ``out/tuning/checkpoints/`` (model/checkpoint.py)."""
    from model.tuning import tune

    out = Path(out)
    for name in models:
        get(name)  # fail fast on an unknown name, before hours of training
    refuse_other_data(out, data)
    out.mkdir(parents=True, exist_ok=True)
    stats = fit_features(data, feature_opts)
    features = FeatureView.build(data, stats)
    runs: dict[str, list[ModelRun]] = {}
    overrides = dict(overrides or {})
    tuning: dict[str, dict] = {}
    searched_with: dict[str, dict] = {}  # each tuned model's --set values, which its search kept fixed
    for name in models:
        if tune_trials > 0:
            searched_with[name] = overrides.get(name, {})
            budget = dataclasses.replace(train_cfg, epochs=tune_epochs, patience=tune_epochs, seed=seeds[0])
            trial_states = out / "tuning" / "checkpoints" if checkpoints else None
            tuning[name] = _tuned(out, name, data.hash, budget, tune_trials, overrides.get(name, {}), tune_rungs,
                                  lambda: tune(name, data, stats, features, tune_trials, budget, fixed=overrides.get(name, {}), rungs=tune_rungs, checkpoints=trial_states))
            overrides[name] = tuning[name]["chosen"]
        for seed in seeds:
            log.info("training %s (seed %d)", name, seed)
            cfg = dataclasses.replace(train_cfg, seed=seed)
            save_dir = out / "models" / name / f"seed{seed}" if save_models else None
            # kept after the run: the same command again goes on from an interrupted run's last epoch, and
            # finds a finished run's best weights without training it again
            checkpoint = out / "checkpoints" / f"{name}-seed{seed}.pt" if checkpoints else None
            runs.setdefault(name, []).append(train_and_test(name, data, stats, features, overrides.get(name, {}), cfg, ks, filter_seen, save_dir, checkpoint=checkpoint))
            _write(out, data, runs, seeds, train_cfg, feature_opts, filter_seen, ks, dataset_name, tuning)  # partial results survive a crash
    plot = _tuning_plot(out, tuning, searched_with, seeds[0], tune_epochs, tune_rungs) if tuning and checkpoints else None
    return _write(out, data, runs, seeds, train_cfg, feature_opts, filter_seen, ks, dataset_name, tuning, plot)


def _tuning_plot(out: Path, tuning: dict[str, dict], fixed: dict[str, dict], seed: int, epochs: int, rungs: int) -> str | None:
    """``OUT/tuning/search.png``: every trial's validation curve per model (model/tuning.py); None when no
    trial kept a checkpoint to draw from."""
    from model.checkpoint import validation_curve
    from model.tuning import plot_searches, search_curves

    panels = {}
    for name, record in tuning.items():
        curves = search_curves(name, record, fixed[name], out / "tuning" / "checkpoints")
        if len(curves) < 2:  # one trial (Pop, or no search space) is no search to look at
            continue
        final = validation_curve(out / "checkpoints" / f"{name}-seed{seed}.pt")
        panels[name] = {"curves": curves, "rungs": [epochs * 2**r for r in range(rungs)], "final": final}
    if not panels:
        return None
    plot_searches(panels, out / "tuning" / "search.png")
    return "tuning/search.png"


def _tuned(out: Path, name: str, data_hash: str, budget: TrainConfig, trials: int, fixed: dict, rungs: int, search) -> dict:
    """A model's tuning record: read from ``out/tuning/NAME.json`` when an earlier invocation searched with
    the same budget and fixed values on the same data, else ``search()`` and write it there. The record names
    its data: :func:`refuse_other_data` reads ``results.json``, which is written only once a model's first run
    ended, so a search interrupted before that was reused on other data (records from before 2026-12-07 name
    none and are still reused). The trials keep no checkpoints, so an interrupted ``--tune`` run used to
    search every model again before reaching its resumable final runs (they keep checkpoints since)."""
    halving = {"rungs": rungs} if rungs > 1 else {}  # absent for one rung: the searches recorded before rungs existed stay valid
    key = {"trials": trials, "epochs": budget.epochs, **halving, "fixed": fixed, "train": {k: v for k, v in dataclasses.asdict(budget).items() if k not in ("progress", "device")}}
    path = out / "tuning" / f"{name}.json"
    if path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if record is not None and record.get("key") == json.loads(json.dumps(key)):
            if record.get("data", data_hash) == data_hash:
                log.info("tuning of %s: reusing the search in %s", name, path)
                return record["tuning"]
            log.warning("tuning of %s: the search in %s was on other data (%s): searching again", name, path, str(record["data"])[:12])
    best, found = search()
    tuning = {"chosen": best, "trials": [dataclasses.asdict(t) for t in found], "budget": {"trials": trials, "epochs": budget.epochs, **halving}}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"key": key, "data": data_hash, "tuning": tuning}, indent=1))
    return tuning


def refuse_other_data(out: Path, data: PreparedDataset) -> None:
    """A folder's results, models and checkpoints describe one dataset: refuse another before anything in it is
    overwritten (the first model's results and artifact used to be replaced before a later model's checkpoint
    refused the new data)."""
    previous = out / "results.json"
    if not previous.is_file():
        return
    try:
        theirs = json.loads(previous.read_text()).get("data_hash")
    except (OSError, ValueError) as error:
        raise ValueError(f"{previous} is unreadable ({error}); move it away or use a new --out") from error
    if theirs and theirs != data.hash:
        raise ValueError(f"{out} holds results on another dataset ({theirs[:12]}; these options and files give {data.hash[:12]}): "
                         "use a new --out, or the same input and options to go on with that run")


def _write(out: Path, data: PreparedDataset, runs: dict[str, list[ModelRun]], seeds, train_cfg, feature_opts, filter_seen, ks, dataset_name, tuning=None, tuning_plot=None) -> dict:
    seq = data.sequences
    results = {
        "dataset": dataset_name or data.meta.get("source", "?"),
        "data_hash": data.hash,
        "n_users": seq.n_users,
        "n_items": seq.n_items,
        "n_interactions": seq.n_interactions,
        "split": data.split.name,
        "n_test": len(data.split.test),
        "test_targets_tied_in_time": tied_target_share(data, data.split.test),
        "protocol": {"ranking": "full catalogue", "filter_seen": filter_seen, "ks": list(ks), "model_selection": "validation " + train_cfg.valid_metric},
        "seeds": seeds,
        "train": dataclasses.asdict(train_cfg),
        "features": dataclasses.asdict(feature_opts or FeatureOptions()),
        "results": {name: summarise(rs) | ({"tuning": tuning[name]} if tuning and name in tuning else {}) for name, rs in runs.items()},
        "significance": significance(runs),
    }
    if tuning_plot:
        results["tuning_plot"] = tuning_plot
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(to_markdown(results))
    return results


def significance(runs: dict[str, list[ModelRun]], metric: str = "NDCG@10") -> dict:
    """Paired tests of every DiffLSRec variant against every other model over the test users, each user's
    value averaged over the seeds both have (all of them in a benchmark run); keys ``OURS_vs_OTHER``, the
    best other model first (before 2026-12-07 it was the only one: "beats the best" alone does not say
    which baselines it is level with)."""
    ours = [n for n in runs if n.startswith("difflsrec")]
    baselines = [n for n in runs if not n.startswith("difflsrec")]
    if not ours or not baselines:
        return {}
    best_first = sorted(baselines, key=lambda n: -np.mean([r.test.mean()[metric] for r in runs[n]]))
    return {f"{o}_vs_{b}": paired_over_seeds(runs[o], runs[b], metric) for o in ours for b in best_first}


def paired_over_seeds(ours: list[ModelRun], other: list[ModelRun], metric: str = "NDCG@10") -> dict | None:
    """Paired tests over the test users on the seeds both have, each user's value averaged over those seeds
    (None when they share no seed)."""
    seeds = sorted({r.seed for r in ours} & {r.seed for r in other})
    if not seeds:
        return None
    a = seed_averaged([r.test for r in ours if r.seed in seeds])
    b = seed_averaged([r.test for r in other if r.seed in seeds])
    return {"metric": metric, "seeds": seeds, **paired_test(a, b, metric)}


def to_markdown(results: dict) -> str:
    lines = [
        f"# Benchmark: {results['dataset']}",
        "",
        f"{results['n_users']} users, {results['n_items']} items, {results['n_interactions']} interactions; split `{results['split']}` "
        f"({results['n_test']} test examples); full-catalogue ranking, seen items {'filtered' if results['protocol']['filter_seen'] else 'kept'}; "
        f"model selection on {results['protocol']['model_selection']}; seeds {results['seeds']} (mean ± std over seeds).",
        "",
        tied_targets_sentence(results.get("test_targets_tied_in_time", 0.0)),
        "",
        "| model | HR@10 | NDCG@10 | MRR@10 | Precision@10 | NDCG@10 95% CI | valid NDCG@10 | best epoch | s/epoch | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["results"].items():
        cells = [f"{r[k]:.4f} ± {r['std'][k]:.4f}" for k in KEY_METRICS]
        ci = r["ci95"]["NDCG@10"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | [{ci[0]:.4f}, {ci[1]:.4f}] | {r['valid'].get('NDCG@10', 0):.4f} | {r['best_epoch']:.0f} | {r['seconds_per_epoch_median']:.1f} | {r['train_seconds']:.0f} |")
    tests = {key: test for key, test in results.get("significance", {}).items() if test}
    if tests:
        first = next(iter(tests.values()))
        over = f", each user's value averaged over seeds {first['seeds']}" if len(first.get("seeds", [])) > 1 else ""
        lines += ["", f"Paired tests over the test users ({first['metric']}{over}; the best other model first):", "",
                  "| pair | mean difference | t-test p | Wilcoxon p |", "|---|---|---|---|"]
        lines += [f"| {key.replace('_vs_', ' vs ')} | {t['mean_diff']:+.4f} | {t['t_pvalue']:.3g} | {t['wilcoxon_pvalue']:.3g} |" for key, t in tests.items()]
    if results.get("tuning_plot"):
        lines += ["", "## Tuning on validation", "", f"![validation NDCG@10 per epoch of every tuning trial]({results['tuning_plot']})"]
    return "\n".join(lines) + "\n"
