"""``difflsrec reproduce``: the paper's experiments on the user's own data, in one command.

* Table 1: Fossil, MARank, GRU4Rec, HGN, SASRec, DiffRec and DiffLSRec on the same split, HR/NDCG/MRR/
  Precision@10 (mean and std over seeds), the paper's "Improvement" row (DiffLSRec against the best
  baseline) and a paired test over users.
* Ablation (Fig. 3): full model, w/o Token, w/o SNR, w/o Both, gate fusion.
* Embedding size (Fig. 2): K in {8, 16, 32, 64, 128}.
Every number is given under full-catalogue ranking (the honest protocol) and, beside it, under the sampled
protocol (target among 100 random unseen items), so a reader can see how far sampled numbers such as the
paper's are from full-ranking ones. Runs shared between parts (the full model, K = its default size) are
trained once. Results are rewritten after every run, and each finished run is kept in ``DIR/runs/<hash>.npz`` (nothing
pickled: ``model.run_file``) under a hash of everything that determines it (data, model, overrides, seed, training settings), so rerunning the same
command resumes where it stopped; a run interrupted mid-way goes on from its last finished epoch (its training
checkpoint, ``DIR/runs/<hash>.checkpoint.pt``, deleted once the run is kept). Each finished run's best-validation
model is kept too, as an artifact in ``DIR/runs/<hash>.model/`` (``report.json`` ``models`` maps run labels to
them): evaluate it, serve it, or take it apart (``benchmarks/fusion_parts.py``) without training again. Several invocations on the same ``--out`` (e.g. the same command once per
core or GPU, or with different ``--parts`` / ``--models``) share the work: each run is claimed with a lock
file. Each invocation reports its own parts and models: of the same command, the last to finish writes the
complete report; after invocations with different ``--parts`` / ``--models``, run the command with all of them
(``--no-train`` to train nothing) for one report of everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difflsrec.files import write_atomic
from difflsrec.progress import progress
from model.batching import FeatureView
from model.benchmark import KEY_METRICS, ModelRun, fit_features, paired_over_seeds, summarise
from model.benchmark import train_and_test as _train_and_test
from model.checkpoint import CheckpointError, curve_of, describe
from model.data.dataset import PreparedDataset
from model.data.prepare import tied_target_share, tied_targets_sentence
from model.registry import get, make_config
from model.run_file import SUFFIX as RUN_SUFFIX
from model.run_file import RunFileError, load_run, save_run
from model.training import TrainConfig

log = logging.getLogger(__name__)

TABLE1 = ["fossil", "marank", "gru4rec", "hgn", "sasrec", "diffrec", "difflsrec"]
ABLATION = {"DiffLSRec": "difflsrec", "w/o Token": "difflsrec-no-token", "w/o SNR": "difflsrec-no-snr", "w/o Both": "difflsrec-no-both", "Gate fusion": "difflsrec-gate"}
K_VALUES = [8, 16, 32, 64, 128]
PARTS = ("table1", "ablation", "k")


@dataclass
class Run:
    model: str
    overrides: dict
    seed: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.overrides or ''} seed {self.seed}".replace("  ", " ")

    @property
    def key(self) -> str:
        return f"{self.model}|{json.dumps(self.overrides, sort_keys=True)}|{self.seed}"


@dataclass
class ReproduceSpec:
    seeds: list[int] = field(default_factory=lambda: [0])
    train: TrainConfig = field(default_factory=TrainConfig)
    overrides: dict[str, dict] = field(default_factory=dict)  # per model name, applied to every run of it
    parts: tuple[str, ...] = PARTS
    models: list[str] = field(default_factory=lambda: list(TABLE1))
    k_values: list[int] = field(default_factory=lambda: list(K_VALUES))
    sampled_negatives: int = 100


def plan(spec: ReproduceSpec) -> dict[str, list[tuple[str, Run]]]:
    """part -> [(row label, run)]; identical runs across parts share one key (trained once)."""
    def run(model: str, extra: dict, seed: int) -> Run:
        return Run(model, {**spec.overrides.get(model, {}), **extra}, seed)

    def variant(model: str, seed: int) -> Run:
        # an ablation variant is the full model minus one part: it takes the full model's --set values too (a
        # `--set difflsrec.d=16` used to shrink the full model only), except the keys its part is made of
        full = {k: v for k, v in spec.overrides.get("difflsrec", {}).items() if k not in get(model).preset}
        return Run(model, {**full, **spec.overrides.get(model, {})}, seed)

    default_d = make_config("difflsrec", spec.overrides.get("difflsrec")).d
    parts: dict[str, list[tuple[str, Run]]] = {}
    if "table1" in spec.parts:
        parts["table1"] = [(m, run(m, {}, s)) for m in dict.fromkeys(spec.models) for s in spec.seeds]  # a name given twice is one row
    if "ablation" in spec.parts:
        parts["ablation"] = [(label, variant(m, s)) for label, m in ABLATION.items() for s in spec.seeds]
    if "k" in spec.parts:
        parts["k"] = [(f"K={k}", run("difflsrec", {} if k == default_d else {"d": k}, s)) for k in dict.fromkeys(spec.k_values) for s in spec.seeds]
    return parts


def reproduce(data: PreparedDataset, spec: ReproduceSpec, out: Path, dataset_name: str = "", train: bool = True) -> dict:
    """Train what ``DIR/runs`` does not hold yet (unless ``train`` is False: report from what is there) and
    write the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = plan(spec)
    unique: dict[str, Run] = {}
    for rows in parts.values():
        for _, r in rows:
            get(r.model)  # fail before hours of training
            unique.setdefault(r.key, r)
    stats = fit_features(data)
    features = FeatureView.build(data, stats)
    done: dict[str, ModelRun] = {}
    started = time.perf_counter()
    cache = out / "runs"
    cache.mkdir(exist_ok=True)
    paths = {key: cache / f"{run_id(r, data, spec)}{RUN_SUFFIX}" for key, r in unique.items()}
    _reload(paths, done)
    if done:
        log.info("reproduce: %d of %d runs already in %s, %d to train", len(done), len(unique), cache, len(unique) - len(done))
    elsewhere: list[Run] = []
    # seed-major order: every configuration's first seed before any second seed, so that a reproduction
    # stopped early still has each row, with fewer seeds (the tables say how many)
    todo = sorted((r for key, r in unique.items() if key not in done), key=lambda r: r.seed)
    if not train and todo:
        log.info("reproduce: reporting without %d runs not in %s (%s)", len(todo), cache, ", ".join(r.label for r in todo))
        todo = []
    # counted by hand, not by iterating the bar: in a log tqdm takes in the count only when it redraws (once a
    # minute), so each run's line said 0 of N runs done
    bar = progress(total=len(todo), desc="reproduce", unit="run")
    try:
        for r in todo:
            path = paths[r.key]
            if not _claim(path):  # another invocation on this DIR is training it
                elsewhere.append(r)
                bar.update()
                continue
            try:
                kept = _load_run(path)  # finished by another invocation since we started
                if kept is not None:
                    done[r.key] = kept
                    continue
                bar.set_description(f"reproduce: {r.label}")
                cfg = dataclasses.replace(spec.train, seed=r.seed)
                # a run killed mid-way goes on from its last finished epoch when the command is run again
                checkpoint = path.with_suffix(".checkpoint.pt")
                done[r.key] = _train_and_test(r.model, data, stats, features, r.overrides, cfg, sampled_negatives=spec.sampled_negatives, checkpoint=checkpoint,
                                              save_dir=model_dir(path))
                save_run(done[r.key], path)
                checkpoint.unlink(missing_ok=True)  # the run file is the result; its training state is not needed
            finally:
                path.with_suffix(".lock").unlink(missing_ok=True)
                bar.update()
            _reload(paths, done)
            _report(parts, done, data, spec, dataset_name, time.perf_counter() - started, unique, paths, out)
    except KeyboardInterrupt:
        # the report on disk was written before the interrupted run began and listed it as not started;
        # rewritten now, it shows the run's checkpoint (epochs done, best so far)
        _reload(paths, done)
        _report(parts, done, data, spec, dataset_name, time.perf_counter() - started, unique, paths, out)
        raise
    bar.close()
    _reload(paths, done)
    missing = [r for r in elsewhere if r.key not in done]
    if missing:
        log.info("reproduce: %d runs are still being trained by other invocations (%s); the last one to finish writes the full report",
                 len(missing), ", ".join(r.label for r in missing))
    return _report(parts, done, data, spec, dataset_name, time.perf_counter() - started, unique, paths, out)


def model_dir(run_path: Path) -> Path:
    """Where a finished run's model artifact is kept, beside its run file."""
    return run_path.with_suffix(".model")


def _report(parts, done, data, spec, dataset_name, seconds, unique, paths, out: Path) -> dict:
    """Build and write the report: the tables, the runs still missing, the kept models and every run's
    validation curve."""
    checkpoints = _unfinished_checkpoints(unique, done, paths)  # read once: the pending list and the curves use them
    report = _with_pending(build_report(parts, done, data, spec, dataset_name, seconds), unique, done, paths, checkpoints)
    # runs finished before models were kept (or copied without them) have none
    report["models"] = {unique[key].label: str(model_dir(paths[key]).relative_to(out)) for key in unique if key in done and (model_dir(paths[key]) / "manifest.json").exists()}
    curves = validation_curves(unique, done, checkpoints)
    if curves:
        _curves_plot(curves, out / "valid_curves.png")
        report["valid_curves_png"] = "valid_curves.png"
    write_report(report, out)
    return report


def _unfinished_checkpoints(unique: dict[str, Run], done: dict, paths: dict[str, Path]) -> dict[str, dict | CheckpointError]:
    """What the checkpoint of each unfinished run that has one says (``describe``), or why it cannot be read."""
    out: dict[str, dict | CheckpointError] = {}
    for key in unique:
        checkpoint = paths[key].with_suffix(".checkpoint.pt")
        if key not in done and checkpoint.exists():
            try:
                out[key] = describe(checkpoint)
            except CheckpointError as error:
                out[key] = error
    return out


def validation_curves(unique: dict[str, Run], done: dict, checkpoints: dict[str, dict | CheckpointError]) -> list[dict]:
    """Validation NDCG@10 per epoch of every run: finished ones from their run files, interrupted or running
    ones from their checkpoints (``finished`` False; ``checkpoints`` as :func:`_unfinished_checkpoints` gives)."""
    curves = []
    for key, r in unique.items():
        if key in done:
            history, best, finished = done[key].history, done[key].best_epoch, True
        elif isinstance(d := checkpoints.get(key), dict):
            history, best, finished = d["history"], d["best_epoch"], False
        else:
            continue
        points = curve_of(history)
        if points:
            curves.append({"config": r.label.rsplit(" seed ", 1)[0], "seed": r.seed, "points": points, "best_epoch": best, "finished": finished})
    return curves


def _with_pending(report: dict, unique: dict[str, Run], done: dict, paths: dict[str, Path], checkpoints: dict[str, dict | CheckpointError]) -> dict:
    """List the runs the report lacks (so that a table with fewer seeds says why), each with where its
    training stands when a checkpoint of it is in DIR/runs (an interrupted run, or one another invocation is
    training)."""
    pending = []
    for key, r in unique.items():
        if key in done:
            continue
        entry: dict = {"run": r.label, "model": r.model, "overrides": r.overrides, "seed": r.seed}
        d = checkpoints.get(key)
        if isinstance(d, CheckpointError):
            entry["checkpoint_error"] = str(d)
        elif d is not None:
            entry.update(epoch=d["epoch"], best_epoch=d["best_epoch"], best_valid_NDCG10=d["best_score"], train_seconds=d["seconds"])
        entry["training"] = paths[key].with_suffix(".lock").exists() and not _stale(paths[key].with_suffix(".lock"))
        pending.append(entry)
    report["pending"] = pending
    return report


# training settings added after runs were cached, with the value those runs were trained with
_ADDED_LATER = {"batching": "bucket", "loss_scale": "batch", "min_epochs": 0}


def run_id(r: Run, data: PreparedDataset, spec: ReproduceSpec) -> str:
    """Hash of everything that determines a run's result (the seed is part of the run's key); only the progress
    display is left out. The code version is not in it: use a new DIR after changing a model."""
    train = {k: v for k, v in dataclasses.asdict(spec.train).items() if k not in ("progress", "seed")}
    # left out of the hash at that value, so the runs cached before them keep their ids
    for key, old_value in _ADDED_LATER.items():
        if train.get(key) == old_value:
            del train[key]
    what = {"data": data.hash, "run": r.key, "train": train, "sampled_negatives": spec.sampled_negatives}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def _reload(paths: dict[str, Path], done: dict[str, ModelRun]) -> None:
    """Pick up runs that this or another invocation on the same DIR has finished."""
    for key, path in paths.items():
        if key not in done:
            kept = _load_run(path)
            if kept is not None:
                done[key] = kept


def _claim(path: Path) -> bool:
    """Take the run's lock file (``<id>.lock``: pid and host) so that several invocations on one DIR (one per
    core or GPU) share the work instead of repeating it. A lock left by a dead process on this host is taken over."""
    lock = path.with_suffix(".lock")
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _stale(lock):
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def _stale(lock: Path) -> bool:
    try:
        pid, host = lock.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):  # being written right now, or unreadable: stale only if old
        try:
            return time.time() - lock.stat().st_mtime > 60
        except OSError:
            return True  # gone meanwhile
    if host != socket.gethostname():
        return False  # another machine's process: we cannot tell, so leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _load_run(path: Path) -> ModelRun | None:
    if not path.exists():
        if path.with_suffix(".pkl").exists():  # written before run files were npz: never unpickled
            log.warning("reproduce: %s is a run file of an older version (a pickle, not read): its run is trained again", path.with_suffix(".pkl"))
        return None
    try:
        return load_run(path)
    except RunFileError as e:  # a run file from an incompatible version: train it again rather than fail
        log.warning("reproduce: ignoring unreadable run %s (%s)", path, e)
        return None


# ---- report ---------------------------------------------------------------------------------------------
def _rows(part: list[tuple[str, Run]], done: dict[str, ModelRun]) -> dict[str, dict]:
    grouped: dict[str, list[ModelRun]] = {}
    for label, r in part:
        if r.key in done:
            grouped.setdefault(label, []).append(done[r.key])
    return {label: summarise(runs) | {"_runs": runs} for label, runs in grouped.items()}


def improvement(rows: dict[str, dict], ours: str = "difflsrec", protocol: str = "full") -> dict:
    """The paper's "Improvement" row: (ours - best baseline) / best baseline, per metric."""
    pick = (lambda r: r) if protocol == "full" else (lambda r: r.get("sampled", {}))
    baselines = {n: r for n, r in rows.items() if n != ours}
    if ours not in rows or not baselines:
        return {}
    out = {}
    for metric in KEY_METRICS:
        best_name = max(baselines, key=lambda n: pick(baselines[n]).get(metric, -1))
        best = pick(baselines[best_name]).get(metric, 0.0)
        mine = pick(rows[ours]).get(metric, 0.0)
        out[metric] = {"best_baseline": best_name, "baseline": best, "difflsrec": mine, "relative": (mine - best) / best if best else float("nan")}
    return out


def claims(ablation: dict[str, dict], metric: str = "NDCG@10") -> dict:
    """The paper's component claims, checked on this data (full ranking)."""
    v = {label: r[metric] for label, r in ablation.items()}
    need = set(ABLATION)
    if not need <= set(v):
        return {}
    return {
        "metric": metric,
        "values": v,
        "token_helps": v["DiffLSRec"] > v["w/o Token"],
        "snr_helps": v["DiffLSRec"] > v["w/o SNR"],
        "removing_both_hurts_most": v["w/o Both"] < min(v["w/o Token"], v["w/o SNR"]),
        "diffusion_beats_gate": v["DiffLSRec"] > v["Gate fusion"],
        "full_model_best": v["DiffLSRec"] == max(v.values()),
    }


def build_report(parts, done, data: PreparedDataset, spec: ReproduceSpec, dataset_name: str, seconds: float) -> dict:
    seq = data.sequences
    report: dict = {
        "dataset": dataset_name,
        "data_hash": data.hash,
        "n_users": seq.n_users,
        "n_items": seq.n_items,
        "n_interactions": seq.n_interactions,
        "split": data.split.name,
        "test_targets_tied_in_time": tied_target_share(data, data.split.test),
        "seeds": spec.seeds,
        "protocols": {"full": "every item ranked, seen items filtered", "sampled": f"target among {spec.sampled_negatives} random unseen items"},
        "train": dataclasses.asdict(spec.train),
        "seconds": seconds,  # this invocation's wall time (runs found in DIR/runs cost it nothing)
        "runs_done": len(done),
        "train_seconds_total": float(sum(r.train_seconds for r in done.values())),
    }
    tables = {name: _rows(rows, done) for name, rows in parts.items()}
    if "table1" in tables:
        t1 = tables["table1"]
        report["table1"] = {n: _public(r) for n, r in t1.items()}
        report["improvement"] = {"full": improvement(t1), "sampled": improvement(t1, protocol="sampled")}
        baselines = [n for n in t1 if n != "difflsrec"]
        if "difflsrec" in t1 and baselines:
            best = max(baselines, key=lambda n: t1[n]["NDCG@10"])
            tests = paired_tests(t1, "difflsrec")
            report["paired_tests"] = tests
            if best in tests:  # not when the two share no seed yet (runs of other invocations, --no-train)
                report["significance"] = {"vs": best, **tests[best]}
    if "ablation" in tables:
        report["ablation"] = {n: _public(r) for n, r in tables["ablation"].items()}
        report["claims"] = claims(tables["ablation"])
        if "DiffLSRec" in tables["ablation"]:
            report["ablation_tests"] = paired_tests(tables["ablation"], "DiffLSRec")
    if "k" in tables:
        report["embedding_size"] = {n: _public(r) for n, r in tables["k"].items()}
    return report


def paired_tests(rows: dict[str, dict], ours: str, metric: str = "NDCG@10") -> dict[str, dict]:
    """``ours`` against every other row: paired tests over test users on the seeds both have, each user's
    value averaged over those seeds."""
    out = {}
    for name, row in rows.items():
        if name != ours and (test := paired_over_seeds(rows[ours]["_runs"], row["_runs"], metric)) is not None:
            out[name] = test
    return out


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_runs"}


def write_report(report: dict, out: Path) -> None:
    # invocations sharing a DIR may write the report at the same moment: each write is whole or absent
    write_atomic(out / "report.json", json.dumps(report, indent=2))
    write_atomic(out / "report.md", to_markdown(report))
    if report.get("ablation"):
        _bar_plot(report["ablation"], "Ablation (full ranking)", out / "ablation.png")
    if report.get("embedding_size"):
        _k_plot(report["embedding_size"], out / "embedding_size.png")


def _table(rows: dict, protocol: str) -> list[str]:
    lines = ["| model | " + " | ".join(KEY_METRICS) + " | seeds |", "|---" * (len(KEY_METRICS) + 2) + "|"]
    for name, r in rows.items():
        src, std = (r, r["std"]) if protocol == "full" else (r.get("sampled", {}), r.get("sampled_std", {}))
        cells = " | ".join(f"{src.get(m, float('nan')):.4f} ± {std.get(m, 0.0):.4f}" for m in KEY_METRICS)
        lines.append(f"| {name} | {cells} | {len(r.get('per_seed', []))} |")
    return lines


def to_markdown(report: dict) -> str:
    lines = [
        f"# Reproduction on {report['dataset']}",
        "",
        f"{report['n_users']} users, {report['n_items']} items, {report['n_interactions']} interactions, split `{report['split']}`, "
        f"seeds {report['seeds']}, {report['runs_done']} training runs, {report.get('train_seconds_total', 0.0) / 60:.1f} min of training in all "
        f"(this invocation: {report['seconds'] / 60:.1f} min). Mean ± std over seeds.",
        "",
        tied_targets_sentence(report.get("test_targets_tied_in_time", 0.0)),
        "",
    ]
    if "table1" in report:
        for protocol in ("full", "sampled"):
            lines += [f"## Table 1 — {protocol} protocol ({report['protocols'][protocol]})", ""]
            lines += _table(report["table1"], protocol)
            imp = report["improvement"].get(protocol, {})
            if imp:
                lines.append("| Improvement | " + " | ".join(f"{100 * imp[m]['relative']:+.2f}% (vs {imp[m]['best_baseline']})" for m in KEY_METRICS) + " | |")
            lines.append("")
        if "significance" in report:
            s = report["significance"]
            lines += [f"Paired test over test users, DiffLSRec vs {s['vs']} ({s['metric']}, full ranking, each user's value averaged over seeds {s['seeds']}): "
                      f"mean difference {s['mean_diff']:+.4f}, t-test p = {s['t_pvalue']:.3g}, Wilcoxon p = {s['wilcoxon_pvalue']:.3g}.", ""]
            lines += _tests_table(report.get("paired_tests", {}))
    if "ablation" in report:
        lines += ["## Ablation (Fig. 3), full ranking", ""] + _table(report["ablation"], "full") + [""]
        c = report.get("claims")
        if c:
            lines += [
                f"Claims on {c['metric']}: token enhancement helps: **{c['token_helps']}**; SNR-adaptive guidance helps: **{c['snr_helps']}**; "
                f"removing both hurts most: **{c['removing_both_hurts_most']}**; diffusion beats gate fusion: **{c['diffusion_beats_gate']}**; "
                f"full model best: **{c['full_model_best']}** (directions of the means; the paired tests below say whether a difference is beyond noise).",
                "",
                *_tests_table(report.get("ablation_tests", {})),
                "![ablation](ablation.png)",
                "",
            ]
    if "embedding_size" in report:
        lines += ["## Embedding size K (Fig. 2), full ranking", ""] + _table(report["embedding_size"], "full") + ["", "![embedding size](embedding_size.png)", ""]
    if report.get("valid_curves_png"):
        lines += ["## Validation curves", "", f"![validation NDCG@10 per epoch]({report['valid_curves_png']})", ""]
    lines += _pending_lines(report.get("pending", []))
    if report.get("models"):
        lines += [f"## Trained models ({len(report['models'])})", "",
                  "Each run's best-validation model, as an artifact (`difflsrec evaluate --artifact`, `difflsrec worker --artifact`):", "",
                  "| run | artifact |", "|---|---|", *[f"| {label} | `{path}` |" for label, path in sorted(report["models"].items())], ""]
    return "\n".join(lines)


def _pending_lines(pending: list[dict]) -> list[str]:
    if not pending:
        return []
    lines = [f"## Not in this report ({len(pending)} runs)", "", "| run | state | epochs done | best validation NDCG@10 (epoch) |", "|---|---|---|---|"]
    for p in pending:
        if "checkpoint_error" in p:
            state = f"unreadable checkpoint: {p['checkpoint_error']}"
        elif p["training"]:
            state = "training now (by another invocation)"
        elif "epoch" in p:
            state = "interrupted: the same command resumes it"
        else:
            state = "not started"
        done, best = (str(p["epoch"]), f"{p['best_valid_NDCG10']:.4f} ({p['best_epoch']})") if "epoch" in p else ("", "")
        lines.append(f"| {p['run']} | {state} | {done} | {best} |")
    return lines + [""]


def _tests_table(tests: dict[str, dict]) -> list[str]:
    if not tests:
        return []
    lines = ["| DiffLSRec vs | mean difference (NDCG@10, per user) | t-test p | Wilcoxon p | seeds |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {t['mean_diff']:+.4f} | {t['t_pvalue']:.3g} | {t['wilcoxon_pvalue']:.3g} | {len(t['seeds'])} |" for n, t in tests.items()]
    return lines + [""]


def _bar_plot(rows: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(rows)
    x = np.arange(len(KEY_METRICS))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, label in enumerate(labels):
        r = rows[label]
        ax.bar(x + i * width, [r[m] for m in KEY_METRICS], width, yerr=[r["std"][m] for m in KEY_METRICS], label=label, capsize=2)
    ax.set_xticks(x + width * (len(labels) - 1) / 2, KEY_METRICS)
    ax.set_ylabel("full-ranking metric (test)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves_plot(curves: list[dict], path: Path) -> None:
    """One line per run, one colour per configuration (its seeds share it), dashed while still training, a dot
    on the best epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(c["config"] for c in curves))
    cmap = plt.get_cmap("tab20" if len(configs) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for c in curves:
        color = cmap(configs.index(c["config"]) % cmap.N)
        epochs, values = zip(*c["points"])
        first_seed = c is next(x for x in curves if x["config"] == c["config"])
        ax.plot(epochs, values, color=color, alpha=0.85, linestyle="-" if c["finished"] else "--", label=c["config"] if first_seed else None)
        if c["best_epoch"] in epochs:
            ax.plot([c["best_epoch"]], [values[epochs.index(c["best_epoch"])]], "o", color=color, markersize=4)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (full ranking)")
    ax.set_title("Validation per epoch, every run (dot: best epoch; dashed: not finished)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(configs) > 8 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _k_plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(label.split("=")[1]) for label in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in KEY_METRICS:
        ax.errorbar(ks, [rows[f"K={k}"][m] for k in ks], yerr=[rows[f"K={k}"]["std"][m] for k in ks], marker="o", capsize=3, label=m)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("embedding size K")
    ax.set_ylabel("full-ranking metric (test)")
    ax.set_title("DiffLSRec: effect of the embedding size")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the axes: inside, it hid the HR curve's end
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
