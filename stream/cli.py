"""``difflsrec worker`` (serve recommendations from Kafka) and ``difflsrec bench stream``.

Options override the ``DIFFLSREC_*`` environment (see :class:`stream.settings.WorkerSettings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
bench_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help="Measure the streaming service.")


def mount(root: typer.Typer) -> None:
    """Add ``worker`` and ``bench stream`` to the top-level ``difflsrec`` command."""
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
    loglevel: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Serve recommendations: consume interactions, update user states, publish top-N lists."""
    from stream.settings import WorkerSettings

    given = {
        "artifact": artifact, "app_id": app_id, "web_port": web_port, "web_host": web_host, "worker_data_dir": data_dir,
        "batch_max": batch_max, "batch_within": batch_within, "inference_steps": inference_steps, "top_n": top_n, "partitions": partitions,
    }
    settings = WorkerSettings(**{key: value for key, value in given.items() if value is not None})
    run_worker(settings, loglevel)


def run_worker(settings, loglevel: str = "info", worker_class=None) -> None:
    """Load the model, create the topics, and run the Faust worker until SIGTERM/SIGINT. ``worker_class``: a
    subclass of ``stream.app.StreamWorker`` to run instead (the tests' fault injection)."""
    from stream.app import StreamWorker, load_bundle, run_faust_worker, use_event_loop
    from stream.topics import ensure_topics

    use_event_loop(settings.event_loop)
    bundle = load_bundle(settings)  # first: a wrong artifact path fails before anything is created on the cluster
    partitions = ensure_topics(settings)
    stream_worker = (worker_class or StreamWorker)(settings, bundle, partitions)
    run_faust_worker(stream_worker.app, settings.profile, loglevel, stop_timeout=settings.stop_timeout, log_repeat_window=settings.log_repeat_window)


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
    modes: Annotated[str, typer.Option(help="what to measure, comma-separated: passthrough, worker")] = "passthrough,worker",
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
    unknown = set(modes) - {"passthrough", "worker"}
    if unknown or not modes:
        raise typer.BadParameter(f"modes are passthrough and/or worker, not {sorted(unknown) or text!r}", param_hint="--modes")
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
