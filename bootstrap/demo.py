"""``difflsrec demo``: the whole system on embedded defaults, end to end, in a few minutes.

1. start the local Apache Kafka broker (its own data dir, free ports on 127.0.0.1);
2. fetch ml-100k (or reuse the cached copy);
3. bootstrap a DiffLSRec model on the first part of the timeline (no future leaks into it);
4. start the streaming worker on the registry;
5. replay the rest of the timeline through Kafka and score the live recommendations prequentially;
6. print the online metrics and latency, write the report, and shut everything down (also on Ctrl-C).
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    dataset: str = "ml-100k"
    train_fraction: float = 0.8
    epochs: int = 5
    kcore: int = 5
    rate: float | None = None  # replay pace, events/s (None: as fast as the system takes them)
    max_events: int | None = None
    workdir: Path | None = None  # kept when given; otherwise a temporary directory, removed at the end
    out: Path | None = None  # replay report directory (default: $DIFFLSREC_HOME/demo)
    overrides: dict | None = None

    def __post_init__(self):  # checked before Kafka starts: 1.0 read as "before epoch second 1" failed after it
        if not 0 < self.train_fraction < 1:
            raise ValueError(f"train_fraction is the share of the timeline that trains, strictly between 0 and 1; got {self.train_fraction}")
        if self.epochs < 1 or (self.max_events is not None and self.max_events < 1) or (self.rate is not None and not self.rate > 0):
            raise ValueError(f"epochs and max_events must be >= 1 and rate > 0; got epochs={self.epochs}, max_events={self.max_events}, rate={self.rate}")


def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt (main thread only); returns the function that undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def run_demo(opts: DemoOptions, echo=print) -> dict:
    from bootstrap.job import BootstrapOptions, run_once
    from bootstrap.registry import Registry
    from bootstrap.replay import ReplayOptions, replay, write_report
    from difflsrec.settings import CommonSettings
    from model.data.fetch import fetch
    from model.training import TrainConfig
    from stream.kafka import LocalKafka, find_free_ports
    from stream.process import WorkerProcess, settings_env

    workdir = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix="difflsrec-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:6]
    topics = {"interactions_topic": f"demo-interactions-{suffix}", "recommendations_topic": f"demo-recommendations-{suffix}", "dlq_topic": f"demo-dlq-{suffix}", "model_updates_topic": f"demo-model-updates-{suffix}"}
    broker = worker = None
    started = time.perf_counter()
    restore_sigterm = _sigterm_as_interrupt()  # a `kill` cleans up like Ctrl-C: worker, broker, temp dir
    try:
        kafka_port, controller_port, web_port = find_free_ports(3)
        broker = LocalKafka(workdir / "kafka", kafka_port, controller_port, num_partitions=4)
        echo(f"[1/5] starting Apache Kafka on {broker.bootstrap_servers} ...")
        broker.start(owned=True)

        data_file = fetch(opts.dataset, dest=CommonSettings().data_dir)
        echo(f"[2/5] dataset {opts.dataset}: {data_file}")

        registry = Registry(workdir / "registry")
        echo(f"[3/5] bootstrapping DiffLSRec on the first {opts.train_fraction:.0%} of the timeline ({opts.epochs} epochs max) ...")
        report = run_once(
            BootstrapOptions(
                inputs=[data_file], train_until=opts.train_fraction, kcore=opts.kcore, overrides=opts.overrides or {},
                train=TrainConfig(epochs=opts.epochs, patience=2), announce=True,
            ),
            registry, broker.bootstrap_servers, topics["interactions_topic"], topics["model_updates_topic"], cache_dir=workdir / "prepared",
        )
        echo("      " + report.line())

        echo("[4/5] starting the streaming worker ...")
        env = settings_env(broker.bootstrap_servers, app_id=f"demo-{suffix}", artifact=registry.root, worker_data_dir=workdir / "worker", partitions=4, **topics)
        worker = WorkerProcess(env, web_port, workdir / "worker.log").start(ready_timeout=180)
        echo(f"      serving {registry.latest()} (http://127.0.0.1:{web_port}/health)")

        echo(f"[5/5] replaying the last {1 - opts.train_fraction:.0%} of the timeline through Kafka ...")
        result = replay(
            ReplayOptions(inputs=[data_file], start_after=opts.train_fraction, rate=opts.rate, max_events=opts.max_events),
            broker.bootstrap_servers, topics["interactions_topic"], topics["recommendations_topic"], topics["dlq_topic"],
        )
        out = Path(opts.out) if opts.out else CommonSettings().home / "demo"
        write_report(result, out)
        from bootstrap.cli import replay_summary

        echo(replay_summary(result))
        echo(f"report: {out / 'replay.json'} (+ metrics_over_time.png, latency_hist.png); offline validation NDCG@10 of the model {report.metrics['valid_NDCG@10']:.4f}")
        echo(f"demo finished in {time.perf_counter() - started:.0f}s")
        return {"bootstrap": report.metrics, "replay": result, "out": str(out)}
    finally:
        if worker is not None:
            code = worker.stop(timeout=60)
            log.info("worker stopped (exit code %s)", code)
        if broker is not None:
            broker.stop()
        if opts.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        restore_sigterm()
