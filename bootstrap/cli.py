"""``difflsrec bootstrap``: retrain, gate, publish and announce a model version, once or periodically."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

from model.data.cli import reads_interactions
from model.data.formats import ReadOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
log = logging.getLogger(__name__)


@app.command()
@reads_interactions
def bootstrap(
    input: list[Path] = typer.Option(None, "--input", "-i", help="history file(s) in any supported format"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    from_topic: bool = typer.Option(False, "--from-topic", help="also read the interactions topic from the beginning"),
    topic_window: str = typer.Option(None, help="only topic events newer than this (e.g. 7d, 12h)"),
    train_until: float = typer.Option(None, help="keep history before this time: a quantile in (0,1) or epoch seconds"),
    every: str = typer.Option(None, help="run periodically (e.g. 30m, 6h); without it, run once"),
    model: str = typer.Option("difflsrec", help="a DiffLSRec variant (the worker needs its streaming update)"),
    set: list[str] = typer.Option(None, "--set", help="hyper-parameter override KEY=VALUE (repeatable)"),
    kcore: int = typer.Option(5, help="iterative k-core on the history"),
    epochs: int = typer.Option(50, help="maximum epochs (early stopping on validation NDCG@10)"),
    patience: int = typer.Option(5),
    lr: float | None = typer.Option(None, help="Adam learning rate (default: the model's own, 3e-3 for DiffLSRec)"),
    max_minutes: float = typer.Option(None, help="wall-clock cap on training"),
    seed: int = typer.Option(0),
    warm_start: bool = typer.Option(True, help="start from the live model's weights"),
    margin: float = typer.Option(0.01, help="refuse a model whose validation NDCG@10 is this much below the live one's"),
    index_kind: str = typer.Option("flat", help="flat (exact) | ivf | hnsw"),
    registry: Path = typer.Option(None, help="registry directory (default: $DIFFLSREC_HOME/registry)"),
    announce: bool = typer.Option(True, help="announce new versions on the model-updates topic"),
) -> None:
    """Train DiffLSRec on history, build its FAISS index and publish a new version atomically."""
    from bootstrap.job import BootstrapOptions, options_dict, parse_duration, run_once
    from bootstrap.registry import Registry
    from model.cli import parse_sets
    from model.training import TrainConfig
    from stream.settings import WorkerSettings

    settings = WorkerSettings()
    if not input and not from_topic:
        raise typer.BadParameter("give --input FILE and/or --from-topic")
    opts = BootstrapOptions(
        inputs=list(input or []), read=read, from_topic=from_topic,
        topic_window=parse_duration(topic_window) if topic_window else None, train_until=train_until, kcore=kcore,
        model=model, overrides=parse_sets(set, prefixed=False),
        train=TrainConfig(epochs=epochs, patience=patience, lr=lr, max_minutes=max_minutes, seed=seed, device=settings.device),
        warm_start=warm_start, margin=margin, index_kind=index_kind, announce=announce,
    )
    reg = Registry(registry or settings.registry_dir)
    period = parse_duration(every) if every else None
    log.info("bootstrap options: %s", options_dict(opts))
    while True:
        started = time.monotonic()
        try:
            report = run_once(opts, reg, settings.bootstrap_servers, settings.interactions_topic, settings.model_updates_topic, settings.cache_dir)
            typer.echo(report.line())
        except Exception as err:  # a failed run leaves the live model untouched; a periodic job keeps going
            if period is None:
                raise
            log.exception("bootstrap run failed (live version unchanged): %s", err)
        if period is None:
            return
        time.sleep(max(0.0, period - (time.monotonic() - started)))


@app.command()
@reads_interactions
def replay(
    input: list[Path] = typer.Option(..., "--input", "-i", help="historical interaction file(s), any supported format"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    users: int = typer.Option(None, help="replay a reproducible random subset of this many users"),
    seed: int = typer.Option(0),
    speed: float = typer.Option(None, help="compress the original timeline this many times"),
    rate: float = typer.Option(None, help="publish at this many events per second"),
    start_after: float = typer.Option(None, help="replay from this time on: a quantile in (0,1) (e.g. the bootstrap's --train-until) or epoch seconds"),
    max_events: int = typer.Option(None, help="stop after this many events"),
    k: int = typer.Option(10, help="cut-off of the prequential metrics"),
    windows: int = typer.Option(10, help="time windows of the metrics-over-time report"),
    drain_timeout: float = typer.Option(30.0, help="seconds without a new recommendation before giving up on the rest"),
    open_loop: bool = typer.Option(False, "--open-loop", help="publish on the clock alone instead of waiting, per user, for the list of their previous event"),
    out: Path = typer.Option(None, help="directory for replay.json and the PNG plots"),
) -> None:
    """Replay history through the live system (interactions -> worker -> recommendations) and score it."""
    from bootstrap.replay import ReplayOptions, write_report
    from bootstrap.replay import replay as run_replay
    from stream.settings import WorkerSettings

    if speed and rate:
        raise typer.BadParameter("give --speed or --rate, not both")
    settings = WorkerSettings()
    opts = ReplayOptions(inputs=list(input), read=read, start_after=start_after, users=users, seed=seed, max_events=max_events, rate=rate, speed=speed, k=k, windows=windows, drain_timeout=drain_timeout, closed_loop=not open_loop)
    report = run_replay(opts, settings.bootstrap_servers, settings.interactions_topic, settings.recommendations_topic)
    typer.echo(replay_summary(report))
    if out:
        write_report(report, out)
        typer.echo(f"wrote {out / 'replay.json'}, {out / 'metrics_over_time.png'}, {out / 'latency_hist.png'}")


def replay_summary(report: dict) -> str:
    a, w, lat = report["all_events"], report["events_with_list"], report["latency_ms"]
    k = report["k"]
    lines = [
        f"replayed {report['n_events']} events of {report['n_users']} users in {report['seconds']:.1f}s ({report['events_per_second']:.0f} events/s, {'closed' if report['closed_loop'] else 'open'} loop)",
        f"prequential HR@{k} {a['HR']:.4f}  NDCG@{k} {a['NDCG']:.4f}  MRR@{k} {a['MRR']:.4f}  (all events; no list = miss)",
        f"             HR@{k} {w['HR']:.4f}  NDCG@{k} {w['NDCG']:.4f}  MRR@{k} {w['MRR']:.4f}  (the {100 * report['share_with_list']:.1f}% of events that had a list)",
        f"recommendations received {report['recommendations_received']}, missing {report['missing_recommendations']}, duplicates {report['duplicate_recommendations']}",
    ]
    if lat.get("n"):
        lines.append(f"latency event -> recommendation: p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    return "\n".join(lines)


@app.command()
def demo(
    dataset: str = typer.Option("ml-100k", help="a dataset `difflsrec data fetch` knows (ml-100k, ml-1m, ciao)"),
    train_fraction: float = typer.Option(0.8, help="the first part of the timeline trains the model; the rest is replayed"),
    epochs: int = typer.Option(5, help="maximum training epochs of the bootstrap model"),
    rate: float = typer.Option(None, help="replay pace in events/s (default: as fast as the system takes them)"),
    max_events: int = typer.Option(None, help="replay at most this many events"),
    workdir: Path = typer.Option(None, help="keep the broker data, registry and worker state here (default: a temporary dir)"),
    out: Path = typer.Option(None, help="replay report directory (default: $DIFFLSREC_HOME/demo)"),
    set: list[str] = typer.Option(None, "--set", help="DiffLSRec hyper-parameter override KEY=VALUE (repeatable)"),
) -> None:
    """The whole system on embedded defaults: local Kafka, ml-100k, bootstrap, worker, replay, metrics."""
    from bootstrap.demo import DemoOptions, run_demo
    from model.cli import parse_sets

    run_demo(DemoOptions(dataset=dataset, train_fraction=train_fraction, epochs=epochs, rate=rate, max_events=max_events, workdir=workdir, out=out, overrides=parse_sets(set, prefixed=False)), echo=typer.echo)
