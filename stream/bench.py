"""``difflsrec bench stream``: one worker vs a pass-through Faust agent on the same broker.

Both run as real processes with the same settings, topics layout and input (a slice of the ratings file
replayed as JSON events, in global time order or ``interleave`` users at a time). For each mode:

* ``max``: a backlog of events is loaded first, then the process starts; throughput = events / (last
  output - first output). The producer is idle meanwhile, so only the consumer side is measured.
* paced loads (events/s): after ``warmup`` seconds at the first load, a paced producer offers each load
  for ``seconds``; the output rate and the event-to-recommendation latency (producer send -> consumer
  receive, both in this process) are measured.

The worker's /metrics (``difflsrec_stage_seconds``) and the CPU time of each process give the profile.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import tempfile
import time
import uuid
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from difflsrec.settings import env_name
from stream.loadgen import HarnessLoop, OutputCollector, PacedProducer
from stream.process import PASSTHROUGH, WORKER, WorkerProcess, cpu_seconds, settings_env
from stream.producer import EventProducer

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    artifact: Path
    ratings: Path | None = None
    loads: list[str] = field(default_factory=lambda: ["500", "1000", "2000", "max"])
    seconds: float = 20.0
    warmup: float = 5.0  # seconds at the first paced load before measuring
    backlog: int = 30_000
    batch_max: int = 256
    batch_within: float = 0.02
    inference_steps: int | None = None
    bootstrap: str | None = None
    partitions: int = 4
    repeat: int = 1  # 'max' runs per mode, alternating modes (a shared machine's load drifts)
    profile_dir: Path | None = None  # cProfile each measured process into this dir
    modes: tuple[str, ...] = ("passthrough", "worker")
    # seconds of produce-and-read traffic through the broker before anything is measured: a fresh JVM
    # interprets Kafka's request paths until its JIT has compiled them (broker CPU per event fell from
    # ~700 to ~300 us once warm), which made whichever mode ran first pay for the warm-up
    broker_warmup: float = 15.0
    trace_dir: Path | None = None  # per-event times of each paced phase (<mode>-<load>.npz)
    interleave: int | None = None  # replay order: None = global time order, N = N users at once (replay_events)


@dataclass
class PhaseResult:
    mode: str
    load: str
    events: int
    answered: int
    seconds: float
    events_per_s: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_us_per_event: float | None = None  # CPU time of the measured process (all its threads) per event
    mean_batch: float | None = None  # valid events per micro-batch (worker only)
    # the rest of the machine during a paced phase: the local broker, and this process (load generator and
    # output reader), CPU per event
    broker_cpu_us_per_event: float | None = None
    bench_cpu_us_per_event: float | None = None
    stages_us_per_event: dict[str, float] = field(default_factory=dict)
    # where the latency goes: p50/p99 (ms) of each hop, see :func:`latency_segments`
    segments_ms: dict[str, dict[str, float]] = field(default_factory=dict)


def replay_events(ratings: Path | None, limit: int | None = None, interleave: int | None = None) -> list[tuple[bytes, bytes]]:
    """The first ``limit`` ratings as (key, JSON value) events, event ids ``b<n>`` in replay order.

    ``interleave=None``: global time order. ML-1M users rated in bursts (most of a user's ratings within
    minutes of each other), so a micro-batch of 256 then holds ~4 users with ~60 events each: few fusion
    rows and table writes per event, many sequential GRU steps. ``interleave=N``: N users active at once
    (users join in order of their first rating, one leaves when their events are done and the next joins),
    round-robin one event each, every user's own events in their time order; a batch of B then holds
    ~min(N, B) distinct users, as a service with many concurrent users sees.
    """
    from difflsrec.settings import CommonSettings
    from model.data.prepare import prepare

    path = ratings or CommonSettings().data_dir / "ml-1m" / "ratings.dat"
    seq = prepare([path]).sequences
    users = np.repeat(np.arange(seq.n_users), seq.lengths())
    if interleave is None:
        order = np.argsort(seq.times, kind="stable")[:limit].tolist()
    elif interleave < 1:
        raise ValueError(f"interleave must be a positive number of users, got {interleave}")
    else:
        order = _round_robin(seq, interleave, len(seq.items) if limit is None else limit)
    out = []
    for n, j in enumerate(order):
        user = str(seq.user_ids[users[j]])
        body = {"user_id": user, "item_id": str(seq.item_ids[seq.items[j]]), "timestamp": int(seq.times[j]), "event_id": f"b{n}"}
        out.append((user.encode(), json.dumps(body, separators=(",", ":")).encode()))
    return out


def _round_robin(seq, active: int, limit: int) -> list[int]:
    """Positions into ``seq.items``: ``active`` users at a time, one event each in turn (see replay_events)."""
    starts = seq.offsets[:-1]
    ends = seq.offsets[1:]
    # a user's first rating = their sequence's first time (sequences are in time order)
    nonempty = np.flatnonzero(ends > starts)
    waiting = deque(nonempty[np.argsort(seq.times[starts[nonempty]], kind="stable")].tolist())
    turn: deque[list[int]] = deque()  # [next position, end] per active user
    order: list[int] = []
    while len(order) < limit and (turn or waiting):
        while len(turn) < active and waiting:
            u = waiting.popleft()
            turn.append([int(starts[u]), int(ends[u])])
        cursor = turn.popleft()
        order.append(cursor[0])
        cursor[0] += 1
        if cursor[0] < cursor[1]:
            turn.append(cursor)
    return order


@contextmanager
def _broker(bootstrap: str | None):
    if bootstrap:
        yield bootstrap, None
        return
    from stream.kafka import LocalKafka, find_free_ports

    with tempfile.TemporaryDirectory(prefix="difflsrec-bench-kafka-") as tmp, LocalKafka(Path(tmp), *find_free_ports(2), num_partitions=1) as broker:
        yield broker.bootstrap_servers, broker


def _run_settings(cfg: BenchConfig, bootstrap: str, workdir: Path, tag: str) -> dict:
    """Settings of one measured process (fresh app id, topics and data dir), with its topics created, so that
    neither the producer nor the collector auto-creates them with the broker's default partition count."""
    from stream.settings import WorkerSettings
    from stream.topics import ensure_topics

    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    settings = dict(
        app_id=f"bench-{suffix}", interactions_topic=f"bench-in-{suffix}", recommendations_topic=f"bench-out-{suffix}",
        dlq_topic=f"bench-dlq-{suffix}", model_updates_topic=f"bench-mu-{suffix}", partitions=cfg.partitions, artifact=cfg.artifact,
        batch_max=cfg.batch_max, batch_within=cfg.batch_within, inference_steps=cfg.inference_steps, worker_data_dir=workdir / suffix,
        threads=1, session_timeout=10, heartbeat_interval=1, log_every=600,
        profile=cfg.profile_dir / f"{suffix}.pstats" if cfg.profile_dir else None,
    )
    ensure_topics(WorkerSettings(bootstrap_servers=bootstrap, **settings))
    return settings_env(bootstrap, **settings)


#: what ``--modes`` can measure, and how the summary names each
MODES = {"passthrough": "pass-through", "table": "pass-through with a table", "worker": "worker"}

STAGE = 'difflsrec_stage_cpu_seconds_total{stage="'
GC_PAUSE = 'difflsrec_gc_pause_seconds_sum{generation="'


def _profile(before: dict[str, float], after: dict[str, float], events: int) -> tuple[dict[str, float], float | None]:
    """Microseconds per event in each stage between two /metrics readings, and the mean batch size."""
    stages = {k[len(STAGE) : -2]: 1e6 * (v - before.get(k, 0.0)) / max(1, events) for k, v in after.items() if k.startswith(STAGE)}
    # wall time in garbage collections (the whole process: event loop and engine thread), as "gc0".."gc2"
    stages |= {f"gc{k[len(GC_PAUSE) : -2]}": 1e6 * (v - before.get(k, 0.0)) / max(1, events) for k, v in after.items() if k.startswith(GC_PAUSE)}
    batches = after.get("difflsrec_batch_size_count", 0.0) - before.get("difflsrec_batch_size_count", 0.0)
    valid = after.get("difflsrec_batch_size_sum", 0.0) - before.get("difflsrec_batch_size_sum", 0.0)
    return stages, (valid / batches if batches else None)


def _start(cfg: BenchConfig, mode: str, env: dict[str, str], workdir: Path) -> WorkerProcess:
    from stream.kafka import find_free_port

    command = WORKER if mode == "worker" else PASSTHROUGH
    if mode == "table":
        env = {**env, "PASSTHROUGH_TABLE": "1"}  # stream/passthrough.py
    return WorkerProcess(env, find_free_port(), workdir / f"{env['DIFFLSREC_APP_ID']}.log", command).start(ready_timeout=180)


def run_max(cfg: BenchConfig, mode: str, events, bootstrap: str, workdir: Path) -> PhaseResult:
    env = _run_settings(cfg, bootstrap, workdir, f"{mode}-max")
    batch = events[: cfg.backlog]
    with EventProducer(bootstrap, env[env_name("interactions_topic")], linger_ms=20, batch_size=256 * 1024, acks=1) as producer:
        for key, value in batch:
            producer.send_raw(key, value)
    with HarnessLoop() as loop, OutputCollector(bootstrap, env[env_name("recommendations_topic")], loop) as collector:
        process = _start(cfg, mode, env, workdir)
        # both readings as soon as it is ready: the stage and GC counters from the process's start would count its
        # start-up (settle_heap's full collection alone was ~3 us per event of a 30,000-event backlog as "gc2")
        cpu0, before = process.cpu_seconds(), process.metrics()
        try:
            done = collector.wait_for(range(len(batch)), timeout=600)
            cpu = process.cpu_seconds() - cpu0
            stages, mean_batch = _profile(before, process.metrics(), len(batch))
        finally:
            process.stop()
    times = sorted(collector.received.values())
    seconds = times[-1] - times[0] if len(times) > 1 else float("nan")
    if not done:
        log.warning("%s max: only %d of %d events answered", mode, len(collector.received), len(batch))
    return PhaseResult(mode, "max", len(batch), len(collector.received), seconds, len(times) / seconds, cpu_us_per_event=1e6 * cpu / len(batch), mean_batch=mean_batch, stages_us_per_event=stages)


def latency_segments(collector: OutputCollector, sent_at: dict[int, float], numbers: list[int]) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of each hop of the answered ``numbers``: ``to_emit`` = send -> the worker's emit_time
    (producer, broker, fetch, batching wait, state, model); ``to_produce`` = emit_time (or send, for the
    pass-through) -> the output record's timestamp (Faust's producer buffer up to aiokafka's send call);
    ``to_receive`` = that -> this process's poll returning it (producer linger, broker, our consumer)."""
    hops: dict[str, list[float]] = {"to_emit": [], "to_produce": [], "to_receive": [], "total": []}
    for n in numbers:
        sent, produced, received = sent_at[n], collector.produced[n], collector.received[n]
        emitted = collector.emitted.get(n)
        if emitted is not None:
            hops["to_emit"].append(emitted - sent)
        hops["to_produce"].append(produced - (sent if emitted is None else emitted))
        hops["to_receive"].append(received - produced)
        hops["total"].append(received - sent)
    return {
        hop: {"p50": float(np.percentile(v, 50)) * 1000, "p99": float(np.percentile(v, 99)) * 1000, "max": float(np.max(v)) * 1000}
        for hop, v in hops.items()
        if v
    }


def _save_trace(path: Path, collector: OutputCollector, sent_at: dict[int, float], numbers: list[int]) -> None:
    """Each answered event's send, emit (NaN for the pass-through), output-record and receive times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, number=np.array(numbers), sent=np.array([sent_at[n] for n in numbers]), emitted=np.array([collector.emitted.get(n, np.nan) for n in numbers]),
        produced=np.array([collector.produced[n] for n in numbers]), received=np.array([collector.received[n] for n in numbers]),
    )


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_paced(cfg: BenchConfig, mode: str, rates: list[int], events, bootstrap: str, workdir: Path, broker_pid: int | None = None) -> list[PhaseResult]:
    env = _run_settings(cfg, bootstrap, workdir, f"{mode}-paced")
    results = []
    sent_at: dict[int, float] = {}
    with ExitStack() as stack:  # unwound in reverse: the process stops first, then the clients, then their loop
        loop = stack.enter_context(HarnessLoop())
        collector = stack.enter_context(OutputCollector(bootstrap, env[env_name("recommendations_topic")], loop))
        producer = stack.enter_context(PacedProducer(bootstrap, env[env_name("interactions_topic")], loop, linger_ms=1, acks=1))
        process = _start(cfg, mode, env, workdir)
        stack.callback(process.stop)
        # warm-up, not measured: the first seconds of a fresh process (connections, metadata of every
        # partition, first table writes) are not its steady state
        warmup = range(0, int(rates[0] * cfg.warmup))
        producer.pace(events, warmup, rates[0], sent_at)
        collector.wait_for(warmup, timeout=60)
        cursor = warmup.stop
        for rate in rates:
            count = int(rate * cfg.seconds)
            phase = range(cursor, cursor + count)
            before, cpu0, own0 = process.metrics(), process.cpu_seconds(), _own_cpu_seconds()
            broker0 = cpu_seconds(broker_pid) if broker_pid else None
            started = producer.pace(events, phase, rate, sent_at)
            complete = collector.wait_for(phase, timeout=60)
            cpu, own = process.cpu_seconds() - cpu0, _own_cpu_seconds() - own0
            broker_cpu = cpu_seconds(broker_pid) - broker0 if broker_pid else None
            answered = [n for n in phase if n in collector.received]
            latencies = np.array([collector.received[n] - sent_at[n] for n in answered]) * 1000
            last = max((collector.received[n] for n in answered), default=started)
            stages, mean_batch = _profile(before, process.metrics(), count)
            if cfg.trace_dir is not None:
                _save_trace(cfg.trace_dir / f"{mode}-{rate}.npz", collector, sent_at, answered)
            results.append(
                PhaseResult(
                    mode, str(rate), count, len(answered), last - started, len(answered) / (last - started),
                    float(np.percentile(latencies, 50)) if len(latencies) else None, float(np.percentile(latencies, 99)) if len(latencies) else None,
                    1e6 * cpu / count, mean_batch, stages_us_per_event=stages, segments_ms=latency_segments(collector, sent_at, answered),
                    broker_cpu_us_per_event=1e6 * broker_cpu / count if broker_cpu is not None else None, bench_cpu_us_per_event=1e6 * own / count,
                )
            )
            if not complete:
                log.warning("%s at %d/s: %d of %d events answered within 60 s of the phase", mode, rate, len(answered), count)
            cursor += count
    return results


def warm_broker(bootstrap: str, events, seconds: float, partitions: int, rate: float = 2000.0) -> None:
    """Send events through a throwaway topic at ``rate`` for ``seconds`` and read them back."""
    from stream.topics import create_topic

    topic = f"bench-warmup-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, partitions)
    count = min(len(events), int(rate * seconds))
    started = time.monotonic()
    with HarnessLoop() as loop, OutputCollector(bootstrap, topic, loop) as reader, PacedProducer(bootstrap, topic, loop) as producer:
        producer.pace(events, range(count), rate, {})
        reader.wait_for(range(count), timeout=60)
    log.info("broker warmed up: %d events through %s in %.1f s", count, topic, time.monotonic() - started)


def run_bench(cfg: BenchConfig, out: Path | None = None) -> list[PhaseResult]:
    rates = [int(x) for x in cfg.loads if x != "max"]
    events = replay_events(cfg.ratings, max(cfg.backlog, int(sum(rates) * cfg.seconds + (rates[0] * cfg.warmup if rates else 0))), cfg.interleave)
    results: list[PhaseResult] = []
    own_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    workdir = Path(tempfile.mkdtemp(prefix="difflsrec-bench-"))
    if cfg.profile_dir is not None:
        cfg.profile_dir.mkdir(parents=True, exist_ok=True)  # each process dumps its profile there on exit
    try:
        with _broker(cfg.bootstrap) as (bootstrap, broker):
            if cfg.broker_warmup > 0:
                warm_broker(bootstrap, events, cfg.broker_warmup, cfg.partitions)
            for _ in range(cfg.repeat if "max" in cfg.loads else 0):
                for mode in cfg.modes:
                    results.append(run_max(cfg, mode, events, bootstrap, workdir))
                    _print(results[-1])
            for mode in cfg.modes if rates else ():
                for result in run_paced(cfg, mode, rates, events, bootstrap, workdir, broker.pid() if broker is not None else None):
                    results.append(result)
                    _print(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    own = resource.getrusage(resource.RUSAGE_SELF)
    log.info("bench process CPU: %.1f s", own.ru_utime + own.ru_stime - own_cpu0.ru_utime - own_cpu0.ru_stime)
    _summary(results)
    if out is not None:
        out.write_text(json.dumps({"config": {k: str(v) for k, v in asdict(cfg).items()}, "results": [asdict(r) for r in results]}, indent=2))
    return results


def _print(r: PhaseResult) -> None:
    latency = f", p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms" if r.p50_ms is not None else ""
    print(f"{r.mode:11s} load {r.load:>5s}: {r.events_per_s:7.0f} events/s ({r.answered}/{r.events} answered){latency}, process CPU {r.cpu_us_per_event:.0f} us/event", flush=True)
    if r.stages_us_per_event:
        print(f"            mean batch {r.mean_batch:.0f}; stages (us/event): " + ", ".join(f"{k} {v:.0f}" for k, v in r.stages_us_per_event.items()), flush=True)
    if r.bench_cpu_us_per_event is not None:
        broker = f"broker {r.broker_cpu_us_per_event:.0f}, " if r.broker_cpu_us_per_event is not None else ""
        print(f"            rest of the machine, CPU per event: {broker}load generator + reader {r.bench_cpu_us_per_event:.0f} us", flush=True)
    if r.segments_ms:
        print("            latency p50/p99/max (ms): " + ", ".join(f"{k} {v['p50']:.1f}/{v['p99']:.1f}/{v['max']:.0f}" for k, v in r.segments_ms.items()), flush=True)


def summary_lines(results: list[PhaseResult]) -> list[str]:
    """Per load: the median events/s of each mode over its runs and their ratio to the pass-through's; with
    several `max` runs also the ratio pair by pair (the i-th run of each mode ran back to back), since one
    machine's speed drifts between runs by more than most differences measured here. The worker is also
    compared with the pass-through that writes a table (mode ``table``) when both ran."""
    lines = []
    for load in dict.fromkeys(r.load for r in results):
        rates = {mode: [r.events_per_s for r in results if r.load == load and r.mode == mode] for mode in MODES}
        cpu = {mode: float(np.median([r.cpu_us_per_event for r in results if r.load == load and r.mode == mode])) for mode in MODES if rates[mode]}
        for mode, base in (("worker", "passthrough"), ("table", "passthrough"), ("worker", "table")):
            if not (rates[mode] and rates[base]):
                continue
            b, m = float(np.median(rates[base])), float(np.median(rates[mode]))
            runs = f" (medians of {len(rates[mode])} runs)" if len(rates[mode]) > 1 else ""
            lines.append(
                f"load {load:>5s}: {MODES[mode]} {m:.0f} / {MODES[base]} {b:.0f} events/s = {100 * m / b:.0f} %; "
                f"CPU {cpu[mode]:.0f} / {cpu[base]:.0f} us per event{runs}"
            )
            pairs = [100 * mr / br for mr, br in zip(rates[mode], rates[base])]
            if len(pairs) > 1:
                lines.append(
                    f"           pair by pair: {', '.join(f'{x:.0f}' for x in pairs)} % "
                    f"(median {np.median(pairs):.0f} %, range {min(pairs):.0f}-{max(pairs):.0f} %)"
                )
    return lines


def _summary(results: list[PhaseResult]) -> None:
    for line in summary_lines(results):
        print(line, flush=True)
