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
EXIT_NOT_PUBLISHED = 3  # a single bootstrap run whose model the gate refused


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
    seed: int = typer.Option(0, envvar="DIFFLSREC_SEED"),
    warm_start: bool = typer.Option(True, help="start from the live model's weights"),
    tolerance: float = typer.Option(0.05, max=1.0, help="refuse a model whose validation NDCG@10 is below the live one's by more than this fraction of it (on the same users; negative: demand an improvement)"),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="... and only when that shortfall is significant at this level (one-sided paired t-test over the validation users; 1 = on the means alone)"),
    index_kind: str = typer.Option("flat", help="flat (exact) | ivf | hnsw"),
    registry: Path = typer.Option(None, help="registry directory (default: $DIFFLSREC_HOME/registry)"),
    announce: bool = typer.Option(True, help="announce new versions on the model-updates topic"),
    keep_versions: int = typer.Option(10, min=0, help="after publishing, keep this many newest versions and remove older ones (the live one always stays; 0 = keep all)"),
) -> None:
    """Train DiffLSRec on history, build its FAISS index and publish a new version atomically.

    Exit code of a single run (no --every): 0 published, 3 trained but not published (the gate found it
    significantly worse than the live version by more than --tolerance of its score; the live version stays), 1 failed."""
    from bootstrap.gate import GateRule
    from bootstrap.job import BootstrapOptions, options_dict, parse_duration, run_once
    from bootstrap.registry import Registry
    from model.cli import parse_sets
    from model.training import TrainConfig
    from stream.settings import WorkerSettings

    settings = WorkerSettings()
    if not input and not from_topic:
        raise typer.BadParameter("give --input FILE and/or --from-topic")
    from index.item_index import KINDS

    if index_kind not in KINDS:  # before training: a typo used to surface only when the index was built
        raise typer.BadParameter(f"--index-kind must be {', '.join(KINDS[:-1])} or {KINDS[-1]}, got {index_kind!r}")
    try:
        gate_rule = GateRule(tolerance, alpha)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    opts = BootstrapOptions(
        inputs=list(input or []), read=read, from_topic=from_topic,
        topic_window=parse_duration(topic_window) if topic_window else None, train_until=train_until, kcore=kcore,
        model=model, overrides=parse_sets(set, prefixed=False),
        train=TrainConfig(epochs=epochs, patience=patience, lr=lr, max_minutes=max_minutes, seed=seed, device=settings.device),
        warm_start=warm_start, gate=gate_rule, index_kind=index_kind, announce=announce, keep_versions=keep_versions or None,
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
            if not report.published:  # a scheduler running it once must be able to tell (it exited 0)
                raise typer.Exit(EXIT_NOT_PUBLISHED)
            return
        time.sleep(max(0.0, period - (time.monotonic() - started)))


@app.command()
@reads_interactions
def replay(
    input: list[Path] = typer.Option(..., "--input", "-i", help="historical interaction file(s), any supported format"),
    read: ReadOptions = ReadOptions(),  # --format, --item-key, --user-col, ... (reads_interactions)
    users: int = typer.Option(None, help="replay a reproducible random subset of this many users"),
    seed: int = typer.Option(0, envvar="DIFFLSREC_SEED"),
    speed: float = typer.Option(None, help="compress the original timeline this many times"),
    rate: float = typer.Option(None, help="publish at this many events per second"),
    start_after: float = typer.Option(None, help="replay from this time on: a quantile in (0,1) (e.g. the bootstrap's --train-until) or epoch seconds"),
    max_events: int = typer.Option(None, help="stop after this many events"),
    k: int = typer.Option(10, help="cut-off of the prequential metrics"),
    windows: int = typer.Option(10, help="time windows of the metrics-over-time report"),
    drain_timeout: float = typer.Option(30.0, help="seconds without a new answer before giving up on the rest"),
    open_loop: bool = typer.Option(False, "--open-loop", help="publish on the clock alone instead of waiting, per user, for the answer to their previous event"),
    out: Path = typer.Option(None, help="directory for replay.json and the PNG plots"),
) -> None:
    """Replay history through the live system (interactions -> worker -> recommendations) and score it.

    Events the worker's rules refuse are counted and not sent; dead letters of sent events are counted apart;
    neither is scored. Exit code 1 when any other event went without an answer (no worker, a stalled or slow
    one: the report is still written, with the counts), 130 on Ctrl-C (the report so far, marked interrupted)."""
    from bootstrap.replay import ReplayInterrupted, ReplayOptions, check_options
    from bootstrap.replay import replay as run_replay
    from stream.settings import WorkerSettings

    opts = ReplayOptions(inputs=list(input), read=read, start_after=start_after, users=users, seed=seed, max_events=max_events, rate=rate, speed=speed, k=k, windows=windows, drain_timeout=drain_timeout, closed_loop=not open_loop)
    if problem := check_options(opts):  # before anything starts
        raise typer.BadParameter(problem[1], param_hint=problem[0])
    settings = WorkerSettings()
    try:
        report = run_replay(opts, settings.bootstrap_servers, settings.interactions_topic, settings.recommendations_topic, settings.dlq_topic, settings.event_limits())
    except ReplayInterrupted as stop:
        _replay_output(stop.report, out)
        typer.echo(f"interrupted: {stop.report['events_sent']} of {stop.report['n_events']} events were sent; the report holds what was measured until then", err=True)
        raise typer.Exit(130) from None
    _replay_output(report, out)
    if problem := replay_problem(report):
        typer.echo(problem, err=True)
        raise typer.Exit(1)


def _replay_output(report: dict, out: Path | None) -> None:
    typer.echo(replay_summary(report))
    if out:
        from bootstrap.replay import write_report

        write_report(report, out)
        typer.echo(f"wrote {out / 'replay.json'}, {out / 'metrics_over_time.png'}, {out / 'latency_hist.png'}")


def replay_problem(report: dict) -> str | None:
    """Why a finished replay failed (exit code 1), with a hint; None when every event had its answer (a list, a
    dead letter) or was refused. Events without an answer make the metrics meaningless: in closed loop a user's
    later events never went out, and an unanswered event's user had no list for the next one."""
    missing = report.get("missing_recommendations", 0)
    if report["n_events"] and not report["events_sent"] and report.get("refused_events") == report["n_events"]:
        return "error: every event was refused by the worker's rules: nothing was sent (refused_reasons in the report)"
    if not missing:
        return None
    topics = report.get("topics", {})
    line = f"error: {missing} of {report['n_events']} events have no answer ({report.get('unanswered_events', missing)} sent and unanswered, {report.get('events_never_sent', 0)} never sent)"
    if report["recommendations_received"] == 0 and report.get("dead_letters", 0) == 0:
        hint = (f"hint: no worker answered on {topics.get('recommendations', 'the recommendations topic')}: is `difflsrec worker` running on this cluster"
                f" and reading {topics.get('interactions', 'the interactions topic')}?")
    else:
        hint = (f"hint: the worker stopped answering (--drain-timeout {report['options']['drain_timeout']:g} s without an answer): is it still running,"
                " or behind? A longer --drain-timeout waits more")
    return f"{line}\n{hint}"


def replay_summary(report: dict) -> str:
    a, w, lat = report["all_events"], report["events_with_list"], report["latency_ms"]
    k = report["k"]
    lines = [
        f"replayed {report['n_events']} events of {report['n_users']} users in {report['seconds']:.1f}s ({report['events_per_second']:.0f} events/s, {'closed' if report['closed_loop'] else 'open'} loop)"
        + (" -- INTERRUPTED" if report.get("interrupted") else ""),
        f"prequential HR@{k} {a['HR']:.4f}  NDCG@{k} {a['NDCG']:.4f}  MRR@{k} {a['MRR']:.4f}  (all {a['n']} scored events; no list = miss)",
        f"             HR@{k} {w['HR']:.4f}  NDCG@{k} {w['NDCG']:.4f}  MRR@{k} {w['MRR']:.4f}  (the {100 * report['share_with_list']:.1f}% of events that had a list)",
    ]
    if "events_never_sent" in report:
        sent = f"events sent {report['events_sent']}, never sent {report['events_never_sent']}"
        if report.get("refused_events"):
            sent += f", refused by the worker's rules (not sent) {report['refused_events']} ({_reasons(report['refused_reasons'])})"
        lines.append(sent)
    answers = f"recommendations received {report['recommendations_received']}, missing {report['missing_recommendations']}, duplicates {report['duplicate_recommendations']}"
    if report.get("dead_letters"):
        answers += f", dead letters {report['dead_letters']} ({_reasons(report['dead_letter_reasons'])}; not scored)"
    if report.get("undelivered_events"):
        answers += f", not taken by Kafka {report['undelivered_events']}"
    lines.append(answers)
    if lat.get("n"):
        lines.append(f"latency event -> recommendation: p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms")
    if report.get("redelivered_recommendations"):
        lines.append(f"note: {report['redelivered_recommendations']} answers were for events the worker had applied already (redelivered): its state was not advanced again")
    if w.get("n", 0) >= 20 and w["HR"] == 0:
        lines.append("note: no event's item was in its user's list. If these events were replayed to this worker before (same app id and state),"
                     " its users' histories hold them already and their items are never recommended again: replay to a worker with fresh state")
    return "\n".join(lines)


def _reasons(counts: dict) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items(), key=lambda kv: -kv[1]))


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
