"""``difflsrec train | evaluate | benchmark | models``: the offline commands."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import typer

from difflsrec.settings import DEFAULT_PATIENCE
from model.data.cli import TIMELINE_CUTS, _resolve_input, prepare_options, reads_interactions
from model.data.formats import ReadOptions
from model.data.prepare import prepare

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
log = logging.getLogger(__name__)

DEFAULT_MODELS = "difflsrec,sasrec,gru4rec,pop"


def parse_value(text: str):
    """'0.2' -> 0.2, 'true' -> True, 'null' -> None, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(pairs: list[str], prefixed: bool) -> dict:
    """['sasrec.dropout=0.5', ...] -> {'sasrec': {'dropout': 0.5}} (prefixed) or {'dropout': 0.5}."""
    out: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        if prefixed:
            if "." not in key:
                raise typer.BadParameter(f"--set expects MODEL.KEY=VALUE, got {pair!r}")
            model, key = key.split(".", 1)
            out.setdefault(model, {})[key] = parse_value(value)
        else:
            out[key] = parse_value(value)
    return out


def known_names(text: str, known, option: str, what: str) -> list[str]:
    """'a, b' -> ['a', 'b'], failing with an option error on an empty list or a name not in ``known``
    (called before any data is read)."""
    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))  # a name given twice was run and counted twice
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise typer.BadParameter(f"unknown {what}(s) {', '.join(map(repr, unknown)) or '(none given)'}; known: {', '.join(known)}", param_hint=option)
    return names


def model_names(text: str, option: str = "--models") -> list[str]:
    from model.registry import available

    return known_names(text, available(), option, "model")


def int_list(text: str, option: str) -> list[int]:
    """'8,16' -> [8, 16] (positive, each once); a clear option error for anything else, before any data is read
    (a K of 0 used to fail only when its run came up, after the runs before it)."""
    try:
        values = list(dict.fromkeys(int(k) for k in text.split(",") if k.strip()))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"expected positive integers, got {text!r}", param_hint=option)
    return values


def at_least(value: int, low: int, option: str) -> int:
    """``value`` when it is >= ``low``, else an option error before any data is read."""
    if value < low:
        raise typer.BadParameter(f"must be >= {low}, got {value}", param_hint=option)
    return value


def check_overrides(overrides: dict[str, dict]) -> dict[str, dict]:
    """Fail on a ``--set`` for an unknown model or an unknown hyper-parameter, before any data is read (a
    mistyped override would otherwise be ignored, or fail after the data is prepared)."""
    from model.registry import make_config

    for name, values in overrides.items():
        model_names(name, option="--set")
        try:
            make_config(name, values)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--set") from None
    return overrides


def load_dataset(
    input: list[Path], read: ReadOptions, kcore: int, users: int | None, seed: int, split: str, subset_seed: int | None = None,
    timeline_cuts: tuple[float, float] = (0.8, 0.9),
):
    """The prepared dataset; its user subset is drawn with ``subset_seed`` when given, else with ``seed``."""
    seed = seed if subset_seed is None else subset_seed
    return prepare([_resolve_input(p) for p in input], prepare_options(read, kcore, users, seed, split, timeline_cuts))


BATCHING_HELP = "bucket: users of similar length batched together under a token budget | random: batch-size random users, lengths mixed, as the reference SASRec code"
LOSS_SCALE_HELP = "target: every training target (DiffRec: every user) weighs the same whatever its batch | batch: each step minimises its batch's mean loss (the default before 2026-11-27)"
SUBSET_SEED_HELP = (
    "seed of the --users subset (default: --seed); it is part of the prepared data's identity, so keep it fixed "
    "(e.g. --subset-seed 0 --seed 1 --seeds 2) to train more seeds on the same users and reuse cached runs"
)
PATIENCE_HELP = "epochs without a better validation NDCG@10 before stopping (10 until 2026-12-06: add --patience 10 to reproduce results made before)"
MIN_EPOCHS_HELP = "no early stop before this epoch (lets a run leave its initial plateau)"
WEIGHT_DECAY_HELP = "Adam's L2 weight decay on every parameter (0 = none; DiffLSRec's own L2 (C.6) on W_Q, W_K, W_V, W_g and its noise network's feed-forward weights is separate)"
LR_HELP = "Adam learning rate for every model (default: each model's own, chosen on validation: 1e-3; DiffLSRec and GRU4Rec 3e-3)"


def train_config(
    epochs: int, patience: int, lr: float | None, batch_size: int, device: str, seed: int, max_minutes: float | None, grad_clip: float = 5.0,
    batching: str = "bucket", loss_scale: str = "target", min_epochs: int = 0, weight_decay: float = 0.0,
):
    from model.training import TrainConfig

    return TrainConfig(
        epochs=epochs, patience=patience, lr=lr, batch_size=batch_size, device=device, seed=seed, max_minutes=max_minutes, grad_clip=grad_clip,
        batching=batching, loss_scale=loss_scale, min_epochs=min_epochs, weight_decay=weight_decay,
    )


@app.command()
def models() -> None:
    """List the registered models and their default hyper-parameters."""
    from model.registry import available, get, make_config

    for name in available():
        cfg = dataclasses.asdict(make_config(name))
        typer.echo(f"{name:22s} {get(name).__doc__.strip().splitlines()[0] if get(name).__doc__ else ''}")
        typer.echo("    " + ", ".join(f"{k}={v}" for k, v in cfg.items()))


@app.command()
@reads_interactions
def benchmark(
    input: list[Path] = typer.Option(..., "--input", "-i", help="interaction file(s) in any supported format"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    models: str = typer.Option(DEFAULT_MODELS, help="comma-separated model names (see `difflsrec models`)"),
    users: int = typer.Option(None, help="reproducible random subset of this many users"),
    kcore: int = typer.Option(5, help="iterative k-core (0 = off)"),
    split: str = typer.Option("loo", help="loo (leave-one-out) | timeline (global time cut)"),
    seed: int = typer.Option(0, help="first seed (data subset and training)", envvar="DIFFLSREC_SEED"),
    seeds: int = typer.Option(1, help="number of training seeds: seed, seed+1, ..."),
    subset_seed: int | None = typer.Option(None, help=SUBSET_SEED_HELP),
    epochs: int = typer.Option(200, help="maximum epochs (early stopping on validation NDCG@10)"),
    patience: int = typer.Option(DEFAULT_PATIENCE, help=PATIENCE_HELP),
    min_epochs: int = typer.Option(0, help=MIN_EPOCHS_HELP),
    lr: float | None = typer.Option(None, help=LR_HELP),
    weight_decay: float = typer.Option(0.0, help=WEIGHT_DECAY_HELP),
    batch_size: int = typer.Option(128),
    max_minutes: float = typer.Option(None, help="wall-clock cap per model run"),
    grad_clip: float = typer.Option(5.0, help="clip each step's gradient norm to this (0 = no clipping)"),
    batching: str = typer.Option("bucket", help=BATCHING_HELP),
    loss_scale: str = typer.Option("target", help=LOSS_SCALE_HELP),
    device: str = typer.Option("auto", envvar="DIFFLSREC_DEVICE", help="auto | cpu | cuda (or cuda:N)"),
    keep_seen: bool = typer.Option(False, help="do not filter already-seen items when ranking"),
    set: list[str] = typer.Option(None, "--set", help="hyper-parameter override MODEL.KEY=VALUE (repeatable)"),
    timeline_cuts: tuple[float, float] = TIMELINE_CUTS,
    tune: int = typer.Option(0, help="tune each model on validation first: this many configurations of its search space (same budget for all)"),
    tune_epochs: int = typer.Option(10, help="epochs per tuning configuration"),
    tune_rungs: int = typer.Option(1, help="successive halving: the better half of the configurations trains on to twice the epochs, for this many rungs (1: every configuration gets --tune-epochs, the best is kept)"),
    out: Path = typer.Option(..., help="output directory for results.json, results.md and model artifacts"),
) -> None:
    """Train every model on the same split and compare them under full-catalogue ranking.

    Each run's training state is kept in OUT/checkpoints/: the same command run again goes on from where an
    interrupted run stopped, and evaluates finished runs from their best weights without training them again."""
    from model.benchmark import run_benchmark

    names = model_names(models)
    overrides = check_overrides(parse_sets(set, prefixed=True))
    cfg = train_config(epochs, patience, lr, batch_size, device, seed, max_minutes, grad_clip, batching, loss_scale, min_epochs, weight_decay)
    at_least(seeds, 1, "--seeds")  # 0 wrote an empty results table
    at_least(tune_rungs, 1, "--tune-rungs")
    data = load_dataset(input, read, kcore, users, seed, split, subset_seed, timeline_cuts)
    results = run_benchmark(
        data, names, out, list(range(seed, seed + seeds)), cfg,
        overrides=overrides, filter_seen=not keep_seen, dataset_name=", ".join(str(p) for p in input),
        tune_trials=tune, tune_epochs=tune_epochs, tune_rungs=tune_rungs,
    )
    typer.echo((out / "results.md").read_text())
    typer.echo(f"wrote {out / 'results.json'} ({len(results['results'])} models)")


@app.command()
@reads_interactions
def train(
    input: list[Path] = typer.Option(..., "--input", "-i"),
    model: str = typer.Option("difflsrec", help="model name (see `difflsrec models`)"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    users: int = typer.Option(None),
    kcore: int = typer.Option(5),
    split: str = typer.Option("loo"),
    seed: int = typer.Option(0, help="training seed (and the --users subset's, unless --subset-seed)", envvar="DIFFLSREC_SEED"),
    subset_seed: int | None = typer.Option(None, help=SUBSET_SEED_HELP),
    epochs: int = typer.Option(200),
    patience: int = typer.Option(DEFAULT_PATIENCE, help=PATIENCE_HELP),
    min_epochs: int = typer.Option(0, help=MIN_EPOCHS_HELP),
    lr: float | None = typer.Option(None, help=LR_HELP),
    weight_decay: float = typer.Option(0.0, help=WEIGHT_DECAY_HELP),
    batch_size: int = typer.Option(128),
    max_minutes: float = typer.Option(None),
    batching: str = typer.Option("bucket", help=BATCHING_HELP),
    loss_scale: str = typer.Option("target", help=LOSS_SCALE_HELP),
    device: str = typer.Option("auto", envvar="DIFFLSREC_DEVICE", help="auto | cpu | cuda (or cuda:N)"),
    set: list[str] = typer.Option(None, "--set", help="hyper-parameter override KEY=VALUE (repeatable)"),
    timeline_cuts: tuple[float, float] = TIMELINE_CUTS,
    out: Path = typer.Option(..., help="artifact directory to write"),
    checkpoint: Path = typer.Option(None, help="training state written after every epoch (default: OUT/checkpoint.pt)"),
    resume: bool = typer.Option(
        True, help="continue from the checkpoint when it holds this run (same model, settings and data): after a kill, or with a "
        "larger --patience / --epochs after a finished run; --no-resume deletes it and starts over",
    ),
) -> None:
    """Train one model, keep its best-validation weights and write a model artifact.

    The run's state is saved after every epoch, so the same command run again after an interruption goes on
    from the last finished epoch and ends where an uninterrupted run would have."""
    from model.batching import FeatureView
    from model.benchmark import fit_features, train_and_test

    names = model_names(model, option="--model")
    if len(names) != 1:
        raise typer.BadParameter(f"one model, got {len(names)}: {model!r}", param_hint="--model")
    model = names[0]
    overrides = check_overrides({model: parse_sets(set, prefixed=False)})[model]
    cfg = train_config(
        epochs, patience, lr, batch_size, device, seed, max_minutes, batching=batching, loss_scale=loss_scale, min_epochs=min_epochs,
        weight_decay=weight_decay,
    )
    data = load_dataset(input, read, kcore, users, seed, split, subset_seed, timeline_cuts)
    stats = fit_features(data)
    checkpoint = checkpoint or out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    run = train_and_test(model, data, stats, FeatureView.build(data, stats), overrides, cfg, save_dir=out, checkpoint=checkpoint)
    typer.echo(f"best epoch {run.best_epoch}: valid {json.dumps({k: round(v, 4) for k, v in run.valid.items()})}")
    typer.echo(f"test  {json.dumps({k: round(v, 4) for k, v in run.test.mean().items()})}")
    typer.echo(f"artifact written to {out}")


@app.command()
@reads_interactions
def evaluate(
    artifact: Path = typer.Option(..., help="model artifact directory"),
    input: list[Path] = typer.Option(..., "--input", "-i", help="the interaction file(s) the artifact was trained on"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    users: int = typer.Option(None),
    kcore: int = typer.Option(5),
    split: str = typer.Option("loo"),
    seed: int = typer.Option(0, help="seed of the --users subset the artifact was trained on (as train's --seed, unless it had --subset-seed)", envvar="DIFFLSREC_SEED"),
    subset_seed: int | None = typer.Option(None, help="the --subset-seed the artifact was trained with, if any (overrides --seed)"),
    timeline_cuts: tuple[float, float] = TIMELINE_CUTS,
    keep_seen: bool = typer.Option(False),
    k: list[int] = typer.Option([10], "--k", help="cut-offs (repeatable)"),
    on: str = typer.Option("test", help="test | valid"),
) -> None:
    """Evaluate a saved artifact on the split it was trained on (full ranking, bootstrap 95% CI)."""
    from model.artifact import load_artifact
    from model.batching import FeatureView
    from model.evaluation import evaluate as run_eval

    if on not in ("test", "valid"):
        raise typer.BadParameter(f"evaluate on test or valid, not {on!r}", param_hint="--on")
    if any(cutoff < 1 for cutoff in k):
        raise typer.BadParameter(f"cut-offs are positive, got {k}", param_hint="--k")
    art = load_artifact(artifact)
    data = load_dataset(input, read, kcore, users, seed, split, subset_seed=subset_seed, timeline_cuts=timeline_cuts)
    # the same prepared data from other input bytes (the ratings gzipped since) passes too; hashed only then
    if art.manifest["data_hash"] != data.hash and art.manifest.get("data_content") != data.content_hash:
        raise typer.BadParameter(f"artifact was trained on dataset {art.manifest['data_hash'][:12]}, these options give {data.hash[:12]}"
                                 + _options_difference(art.manifest.get("data_options"), data.meta.get("options")))
    examples = data.split.test if on == "test" else data.split.valid
    res = run_eval(art.model, data, FeatureView.build(data, art.stats), examples, ks=tuple(k), filter_seen=not keep_seen)
    typer.echo(f"{art.manifest['model']} on {len(examples)} {on} examples (full ranking{', seen items kept' if keep_seen else ''})")
    ci = res.bootstrap_ci()
    for name, value in res.mean().items():
        typer.echo(f"{name:14s} {value:.4f}  95% CI [{ci[name][0]:.4f}, {ci[name][1]:.4f}]")


def _options_difference(trained: dict | None, given: dict | None) -> str:
    """Why two datasets differ, for the artifact/data mismatch error: the preparation options that differ
    (artifacts record them since 2026-12-06), or else that the input content differs."""
    if not trained or not given:
        return ": the input files or the preparation options (--kcore, --users, --seed/--subset-seed, --split, --timeline-cuts, reading options) differ"

    def flat(options: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in options.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    a, b = flat(trained), flat(given)
    differ = [f"{key} {a.get(key)!r} (given {b.get(key)!r})" for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    if differ:
        return f"; it was prepared with {', '.join(differ)}"
    return "; the preparation options are the same, so the input files' content differs (other files, or edited since)"


@app.command()
@reads_interactions
def reproduce(
    input: list[Path] = typer.Option(..., "--input", "-i", help="interaction file(s), e.g. an Amazon Reviews 2023 category"),
    preset: str = typer.Option(None, help="'paper': the paper's protocol (10,000 random users per domain, 5-core)"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    users: int = typer.Option(None, help="reproducible subset of this many users (the paper: 10000)"),
    kcore: int = typer.Option(5),
    split: str = typer.Option("loo"),
    seed: int = typer.Option(0, help="first seed (data subset and training)", envvar="DIFFLSREC_SEED"),
    seeds: int = typer.Option(3, help="training seeds per configuration"),
    subset_seed: int | None = typer.Option(None, help=SUBSET_SEED_HELP),
    parts: str = typer.Option("table1,ablation,k", help="which experiments: table1, ablation, k"),
    models: str = typer.Option(",".join(["fossil", "marank", "gru4rec", "hgn", "sasrec", "diffrec", "difflsrec"]), help="Table 1 models"),
    k_values: str = typer.Option("8,16,32,64,128", help="embedding sizes for the K study"),
    epochs: int = typer.Option(200),
    patience: int = typer.Option(DEFAULT_PATIENCE, help=PATIENCE_HELP),
    min_epochs: int = typer.Option(0, help=MIN_EPOCHS_HELP),
    lr: float | None = typer.Option(None, help=LR_HELP),
    weight_decay: float = typer.Option(0.0, help=WEIGHT_DECAY_HELP),
    batch_size: int = typer.Option(128),
    max_minutes: float = typer.Option(None, help="wall-clock cap per training run"),
    batching: str = typer.Option("bucket", help=BATCHING_HELP),
    loss_scale: str = typer.Option("target", help=LOSS_SCALE_HELP),
    device: str = typer.Option("auto", envvar="DIFFLSREC_DEVICE", help="auto | cpu | cuda (or cuda:N)"),
    sampled_negatives: int = typer.Option(100, help="negatives of the sampled protocol shown beside full ranking"),
    set: list[str] = typer.Option(None, "--set", help="hyper-parameter override MODEL.KEY=VALUE (repeatable)"),
    timeline_cuts: tuple[float, float] = TIMELINE_CUTS,
    out: Path = typer.Option(..., help="output directory: report.md, report.json, ablation.png, embedding_size.png"),
    no_train: bool = typer.Option(False, "--no-train", help="train nothing: write the report from the runs already in DIR/runs"),
) -> None:
    """Reproduce the paper's Table 1, ablation (Fig. 3) and embedding-size study (Fig. 2) on your data."""
    from model.reproduce import PARTS, ReproduceSpec
    from model.reproduce import reproduce as run_reproduce

    if preset == "paper":
        users = users or 10_000
    elif preset is not None:
        raise typer.BadParameter(f"unknown preset {preset!r} (known: paper)")
    spec = ReproduceSpec(
        seeds=list(range(seed, seed + at_least(seeds, 1, "--seeds"))),  # 0 wrote an empty report
        train=train_config(
            epochs, patience, lr, batch_size, device, seed, max_minutes, batching=batching, loss_scale=loss_scale, min_epochs=min_epochs,
            weight_decay=weight_decay,
        ),
        overrides=check_overrides(parse_sets(set, prefixed=True)),
        parts=tuple(known_names(parts, PARTS, "--parts", "part")),
        models=model_names(models),
        k_values=int_list(k_values, "--k-values"),
        # the sampled protocol is always shown beside full ranking: 0 gave a table of NaN, a negative count
        # failed after the first run
        sampled_negatives=at_least(sampled_negatives, 1, "--sampled-negatives"),
    )
    data = load_dataset(input, read, kcore, users, seed, split, subset_seed, timeline_cuts)
    run_reproduce(data, spec, out, dataset_name=", ".join(str(p) for p in input), train=not no_train)
    typer.echo((out / "report.md").read_text())
