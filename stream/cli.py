"""``difflsrec worker`` (serve recommendations from Kafka), ``send`` and ``follow`` (events in and records out
from a terminal, stream/console.py) and ``difflsrec bench stream``.

Options override the ``DIFFLSREC_*`` environment (see :class:`stream.settings.WorkerSettings`).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help="Measure the streaming service.")


def mount(root: typer.Typer) -> None:
    """Add ``worker``, ``send``, ``follow`` and ``bench`` to the top-level ``difflsrec`` command."""
    root.registered_commands.extend(app.registered_commands)
    root.add_typer(bench_app, name="bench")


@app.command()
def worker(
    artifact: Annotated[Optional[Path], typer.Option(help="model artifact dir, or a registry dir (serves its live version) (env DIFFLSREC_ARTIFACT; default <home>/registry)")] = None,
    app_id: Annotated[Optional[str], typer.Option(help="consumer group / app id (env DIFFLSREC_APP_ID)")] = None,
    web_port: Annotated[Optional[int], typer.Option(help="HTTP port, one per worker on a machine (env DIFFLSREC_WEB_PORT)")] = None,
    web_host: Annotated[Optional[str], typer.Option(help="HTTP bind address (env DIFFLSREC_WEB_HOST, default 127.0.0.1)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="this worker's RocksDB dir (env DIFFLSREC_WORKER_DATA_DIR)")] = None,
    batch_max: Annotated[Optional[int], typer.Option(help="events per micro-batch (env DIFFLSREC_BATCH_MAX)")] = None,
    batch_within: Annotated[Optional[float], typer.Option(help="seconds to fill a micro-batch (env DIFFLSREC_BATCH_WITHIN)")] = None,
    inference_steps: Annotated[Optional[int], typer.Option(help="reverse diffusion steps (default: the artifact's) (env DIFFLSREC_INFERENCE_STEPS)")] = None,
    top_n: Annotated[Optional[int], typer.Option(help="items per recommendation (env DIFFLSREC_TOP_N)")] = None,
    partitions: Annotated[Optional[int], typer.Option(help="partitions of topics created by the worker (env DIFFLSREC_PARTITIONS)")] = None,
    seed_states: Annotated[Optional[bool], typer.Option("--seed-states/--no-seed-states", help="start users new to this worker from the artifact's history of them (env DIFFLSREC_SEED_STATES, default on)")] = None,
    loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Serve recommendations: consume interactions, update user states, publish top-N lists."""
    from stream.settings import WorkerSettings

    given = {
        "artifact": artifact, "app_id": app_id, "web_port": web_port, "web_host": web_host, "worker_data_dir": data_dir,
        "batch_max": batch_max, "batch_within": batch_within, "inference_steps": inference_steps, "top_n": top_n, "partitions": partitions,
        "seed_states": seed_states,
    }
    settings = WorkerSettings(**{key: value for key, value in given.items() if value is not None})
    run_worker(settings, loglevel)


def run_worker(settings, loglevel: str = "info", worker_class=None) -> None:
    """Load the model, create the topics, and run the Faust worker until SIGTERM/SIGINT. ``worker_class``: a
    subclass of ``stream.app.StreamWorker`` to run instead (the tests' fault injection)."""
    from stream.app import StreamWorker, load_bundle, run_faust_worker, use_event_loop
    from stream.settings import unknown_settings
    from stream.topics import ensure_topics, require_reachable

    for problem in unknown_settings(os.environ):
        typer.echo(f"warning: {problem}; it is ignored", err=True)
    use_event_loop(settings.event_loop)
    with _own_data_dir(settings.datadir):  # before joining the group: a second worker here disrupted the first
        _require_free_port(settings.web_host, settings.web_port)
        bundle = load_bundle(settings)  # first: a wrong artifact path fails before anything is created on the cluster
        require_reachable(settings.bootstrap_servers)  # ~3 s and one line without a broker (kafka-python: 34 s, 130 lines)
        partitions = ensure_topics(settings)
        stream_worker = (worker_class or StreamWorker)(settings, bundle, partitions)
        run_faust_worker(stream_worker.app, settings.profile, loglevel, stop_timeout=settings.stop_timeout, log_repeat_window=settings.log_repeat_window, gc_threshold=settings.gc_threshold)


@contextmanager
def _own_data_dir(datadir: Path):
    """Hold an exclusive lock on the worker's data directory for the process's life. Two workers on one
    directory share RocksDB files: the second used to join the consumer group (a rebalance of the first),
    retry Faust's RocksDB lock for 30 s, then crash with a KeyError."""
    from difflsrec.files import LockBusy, pid_lock

    if datadir.exists() and not datadir.is_dir():
        raise NotADirectoryError(f"the worker's data directory {datadir} is a file")
    datadir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            stack.enter_context(pid_lock(datadir / ".worker.lock"))
        except LockBusy as busy:
            raise OSError(f"the data directory {datadir} is in use by another worker ({busy.owner or 'another process'}): give each worker its own --data-dir") from None
        yield


def _require_free_port(host: str, port: int) -> None:
    """The web server's port, checked before anything starts (Faust fails later with a 60-line traceback)."""
    from stream.kafka.launcher import port_is_free

    if not port_is_free(port, host):
        # port 0 is always free: if that fails too, the host is the problem (it does not resolve, is not this
        # machine's, is IPv6), which was reported as a port in use, to be fixed with another --web-port
        if not port_is_free(0, host):
            raise OSError(f"the worker's web server cannot listen on {host}: --web-host (DIFFLSREC_WEB_HOST) must be an IPv4 address or name of this machine")
        raise OSError(f"the worker's web port {host}:{port} is not free: another worker or server uses it; pick another with --web-port")


FOLLOWED = ("recommendations", "dlq", "interactions")


def _kafka_settings(bootstrap: str | None, **topics: str | None):
    from stream.settings import WorkerSettings

    given = {"bootstrap_servers": bootstrap, **topics}
    return WorkerSettings(**{key: value for key, value in given.items() if value is not None})


@app.command()
def send(
    user: Annotated[Optional[str], typer.Option(help="user id of one event (with --item)")] = None,
    item: Annotated[Optional[str], typer.Option(help="item id of one event (with --user)")] = None,
    timestamp: Annotated[Optional[str], typer.Option(help="event time: epoch seconds or milliseconds, or ISO-8601 (naive = UTC) (default: now)")] = None,
    event_id: Annotated[Optional[str], typer.Option(help="event id, for de-duplication (default: a fresh cli-... id)")] = None,
    event_type: Annotated[Optional[str], typer.Option()] = None,
    rating: Annotated[Optional[float], typer.Option()] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="JSON lines, one event per line, as the interactions topic takes them ('-': standard input; .gz: gzip)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for each event's recommendation (or dead letter) and print it")] = False,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="with --wait: seconds without a new answer before giving up on the rest (default 30)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per event on stdout (position, and with --wait the answer)")] = False,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)")] = None,
    topic: Annotated[Optional[str], typer.Option(help="interactions topic (env DIFFLSREC_INTERACTIONS_TOPIC)")] = None,
) -> None:
    """Publish interaction events keyed by user id, checked with the worker's own rules first; --wait prints what the worker answered."""
    from difflsrec.progress import progress
    from stream.console import Sender, describe_refused, event_from_options, format_dead_letter, format_recommendation, numbered_lines, outcome_json, refused_json
    from stream.producer import EventProducer, TopicReader
    from stream.schemas import Recommendation
    from stream.topics import ensure_topics_created, require_reachable

    if (file is None) == (user is None and item is None) or (file is None and (user is None or item is None)):
        raise typer.BadParameter("give one event with --user and --item, or a file of events with --file", param_hint="--user/--item/--file")
    if file is not None and any(v is not None for v in (timestamp, event_id, event_type, rating)):
        raise typer.BadParameter("--timestamp, --event-id, --event-type and --rating describe the one event of --user/--item; a file's lines carry their own", param_hint="--file")
    if timeout is not None and not wait:
        raise typer.BadParameter("--timeout is how long --wait waits for answers; without --wait nothing waits", param_hint="--timeout")
    timeout = 30.0 if timeout is None else timeout
    if file is not None and str(file) != "-":  # anything that opens is fine: a pipe such as <(zcat x.gz) too
        if not file.exists():
            raise FileNotFoundError(f"event file not found: {file}")
        if file.is_dir():
            raise IsADirectoryError(f"{file} is a directory, not an event file")
    settings = _kafka_settings(bootstrap, interactions_topic=topic)
    if file is None:
        lines, source = [(1, event_from_options(user, item, timestamp, event_id, event_type, rating))], None
    else:
        lines, source = numbered_lines(file), str(file)
    require_reachable(settings.bootstrap_servers)
    partitions, new_topic = ensure_topics_created(settings)  # as the worker creates them: none auto-created with the broker's partition count
    if new_topic:  # first use of a cluster, or a mistyped --topic: no worker has read it yet
        typer.echo(f"created topic {settings.interactions_topic} ({partitions} partitions) on {settings.bootstrap_servers}: it did not exist", err=True)

    def on_refused(refused) -> None:
        typer.echo(refused_json(refused) if as_json else describe_refused(refused, source), err=not as_json)

    def on_sent(sent) -> None:  # without --wait
        bar.update()
        if as_json:
            typer.echo(outcome_json(sent, None, waited=False))
        elif file is None:
            typer.echo(f"sent: user {sent.event.user_id}, item {sent.event.item_id}, event {sent.event.event_id} -> {sent.position}")

    def on_answer(sent, answer) -> None:  # with --wait
        bar.update()
        if as_json:
            typer.echo(outcome_json(sent, answer, waited=True))
        elif answer is None:
            waited = "not waited for (stopped early)" if stopped_early else f"within {timeout:g} s"
            typer.echo(f"{sent.event.user_id}: no answer to event {sent.event.event_id or sent.position} {waited}")
        else:
            typer.echo(format_recommendation(answer) if isinstance(answer, Recommendation) else format_dead_letter(answer))

    readers, sender, interrupted, stopped_early = [], None, False, False
    bar = progress(desc="send", unit="ev", disable=file is None or not sys.stderr.isatty())  # a few lines need no bar
    try:
        if wait:  # positioned at the ends before the first event goes out, so no answer can be missed
            for name in (settings.recommendations_topic, settings.dlq_topic):
                readers.append(TopicReader(settings.bootstrap_servers, name, from_beginning=False, allow_auto_create_topics=False))
                readers[-1].wait_for_assignment()
        with EventProducer(settings.bootstrap_servers, settings.interactions_topic) as producer:
            sender = Sender(producer, settings.event_limits(), on_refused=on_refused, on_sent=on_sent, on_answer=on_answer, readers=readers)
            try:
                sender.send(lines)
                sender.finish(timeout)
            except KeyboardInterrupt:
                # what was published is still confirmed and reported (a second Ctrl-C stops that too)
                interrupted = stopped_early = True
                sender.confirm()
                sender.give_up()
            except BaseException:
                stopped_early = True
                sender.confirm()  # the events before a read error are reported, then the error
                sender.give_up()
                raise
    finally:
        bar.close()
        for reader in readers:
            reader.close()
        if sender is not None:
            _send_summary(sender.tally, settings, wait, interrupted)
    t = sender.tally
    if interrupted:
        raise typer.Exit(130)
    if t.refused or t.undelivered or t.dead_letters or t.unanswered:
        raise typer.Exit(1)


def _send_summary(t, settings, wait: bool, interrupted: bool) -> None:
    summary = f"sent {t.sent} event(s) to {settings.interactions_topic} on {settings.bootstrap_servers}"
    if t.refused or t.undelivered:
        summary += f"; {t.refused} refused, {t.undelivered} not delivered"
    if wait:
        summary += f"; answers: {t.recommendations} recommendation(s), {t.dead_letters} dead letter(s), {t.unanswered} none"
    if interrupted:
        summary += f"; interrupted after line {t.last_line}: the lines after it were not read"
    typer.echo(summary, err=True)
    if t.unanswered and not interrupted:
        typer.echo(f"hint: no answer means no worker consumed the events: is `difflsrec worker` running on this cluster and reading {settings.interactions_topic}?", err=True)


@app.command()
def follow(
    what: Annotated[str, typer.Argument(help="recommendations, dlq (dead letters) or interactions (raw events)")] = "recommendations",
    user: Annotated[Optional[str], typer.Option(help="only this user's records (the topics are keyed by user id; recommendations are read from the user's one partition)")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="read the topic from its start (default: only records that arrive from now on)")] = False,
    count: Annotated[Optional[int], typer.Option(min=1, help="stop after this many records (exit code 1 if fewer came)")] = None,
    timeout: Annotated[Optional[float], typer.Option(min=0.1, help="stop after this many seconds without a record (default: until Ctrl-C)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per record (the message itself for recommendations and events)")] = False,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)")] = None,
    topic: Annotated[Optional[str], typer.Option(help="the topic's name (default: the worker's setting for WHAT, env DIFFLSREC_RECOMMENDATIONS_TOPIC etc.)")] = None,
) -> None:
    """Print a topic's records as they arrive: recommendation lists, dead letters with their reason, or raw events."""
    from stream.console import follow as follow_topic
    from stream.producer import TopicReader
    from stream.topics import key_partition, partition_count, require_reachable

    if what not in FOLLOWED:
        raise typer.BadParameter(f"follow one of {', '.join(FOLLOWED)}, not {what!r}", param_hint="WHAT")
    settings = _kafka_settings(bootstrap)
    require_reachable(settings.bootstrap_servers)
    name = topic or {"recommendations": settings.recommendations_topic, "dlq": settings.dlq_topic, "interactions": settings.interactions_topic}[what]
    partitions = partition_count(settings.bootstrap_servers, name)
    if partitions is None:
        raise ValueError(f"topic {name!r} does not exist on {settings.bootstrap_servers}: `difflsrec worker` creates its topics when it starts")
    # The worker publishes a user's recommendations with Kafka's default partitioner, so they are all in one
    # partition: read only that one. Events and dead letters are keyed by whoever produced them (librdkafka's
    # default partitioner is not Kafka's; a dead letter keeps its event's key): every partition.
    only = [key_partition(user.encode(), partitions)] if user is not None and what == "recommendations" else None
    printed: list[int] = [0]

    def echo(text: str) -> None:
        typer.echo(text)
        printed[0] += 1

    try:
        with TopicReader(settings.bootstrap_servers, name, from_beginning=from_beginning, partitions=only, allow_auto_create_topics=False) as reader:
            reader.wait_for_assignment()
            where = f"{name} (partition {only[0]} of {partitions})" if only else name
            typer.echo(f"following {where} on {settings.bootstrap_servers}" + (f", user {user}" if user else "") + (" from the beginning" if from_beginning else ""), err=True)
            follow_topic(reader, what, echo, user=user, count=count, idle_timeout=timeout, as_json=as_json)
    except KeyboardInterrupt:  # Ctrl-C is how a follow without --count ends
        typer.echo(f"interrupted after {printed[0]} record(s)" + (f" of {count}" if count is not None else ""), err=True)
        raise typer.Exit(130) from None
    if count is not None and printed[0] < count:
        typer.echo(f"{printed[0]} of {count} record(s) within {timeout:g} s without a new one", err=True)
        raise typer.Exit(1)


@bench_app.command("stream")
def bench_stream(
    artifact: Annotated[Path, typer.Option(help="model artifact to serve (e.g. `difflsrec train --input ml-1m/ratings.dat --epochs 1 --out DIR`)")],
    ratings: Annotated[Optional[Path], typer.Option(help="interaction file replayed as events (default: the ml-1m ratings)")] = None,
    loads: Annotated[str, typer.Option(help="offered loads in events/s, comma-separated; 'max' = drain a backlog")] = "500,1000,2000,max",
    seconds: Annotated[float, typer.Option(help="duration of each paced load")] = 20.0,
    backlog: Annotated[int, typer.Option(help="events pre-loaded for the 'max' load")] = 30000,
    batch_max: Annotated[int, typer.Option()] = 256,
    batch_within: Annotated[float, typer.Option()] = 0.02,
    inference_steps: Annotated[Optional[int], typer.Option()] = None,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka to use (default: start a private local broker)")] = None,
    partitions: Annotated[int, typer.Option(help="partitions of the benchmark topics")] = 4,
    repeat: Annotated[int, typer.Option(help="'max' runs per mode, alternating (the machine's load drifts)")] = 3,
    profile_dir: Annotated[Optional[Path], typer.Option(help="cProfile each measured process into this directory (slower)")] = None,
    broker_warmup: Annotated[float, typer.Option(help="seconds of traffic through the broker before measuring (a fresh JVM is slow until its JIT has run)")] = 15.0,
    modes: Annotated[str, typer.Option(help="what to measure, comma-separated: passthrough, worker, table (the pass-through writing each user's last event of a batch into a table, as the worker writes its states: Faust's ceiling with a table)")] = "passthrough,worker",
    trace_dir: Annotated[Optional[Path], typer.Option(help="save each paced phase's per-event times here (<mode>-<load>.npz)")] = None,
    interleave: Annotated[Optional[int], typer.Option(min=1, help="replay N users at a time, round-robin, each user's events in time order (a micro-batch then holds ~N distinct users); default: global time order, ~4 users per batch of 256 on ML-1M")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write the results as JSON here")] = None,
) -> None:
    """Throughput and latency of one worker vs a pass-through Faust agent on the same broker."""
    from stream.bench import BenchConfig, run_bench

    cfg = BenchConfig(
        artifact=artifact, ratings=ratings, loads=[x.strip() for x in loads.split(",") if x.strip()], seconds=seconds, backlog=backlog,
        batch_max=batch_max, batch_within=batch_within, inference_steps=inference_steps, bootstrap=bootstrap, partitions=partitions, repeat=repeat, profile_dir=profile_dir,
        modes=_modes(modes), trace_dir=trace_dir, broker_warmup=broker_warmup, interleave=interleave,
    )
    run_bench(cfg, out)


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    from stream.bench import MODES

    unknown = set(modes) - set(MODES)
    if unknown or not modes:
        raise typer.BadParameter(f"modes are {', '.join(MODES)} (any of them), not {sorted(unknown) or text!r}", param_hint="--modes")
    return modes


@bench_app.command("swap")
def bench_swap(
    artifact: Annotated[Path, typer.Option(help="model artifact; its weights are served as version swap-a, then republished as swap-b")],
    ratings: Annotated[Optional[Path], typer.Option(help="interaction file replayed as events (default: the ml-1m ratings)")] = None,
    rate: Annotated[int, typer.Option(help="steady offered load, events/s")] = 500,
    seconds: Annotated[float, typer.Option(help="measured period; the new version is published half-way")] = 40.0,
    batch_max: Annotated[int, typer.Option()] = 256,
    batch_within: Annotated[float, typer.Option()] = 0.02,
    bootstrap: Annotated[Optional[str], typer.Option(help="Kafka to use (default: start a private local broker)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="write swap.json and swap_latency.png here")] = None,
) -> None:
    """The latency cost of a hot swap: a steady load before, during and after a new version goes live."""
    from stream.bench_swap import SwapConfig, run_swap

    run_swap(SwapConfig(artifact=artifact, ratings=ratings, rate=rate, seconds=seconds, batch_max=batch_max, batch_within=batch_within, bootstrap=bootstrap), out)
