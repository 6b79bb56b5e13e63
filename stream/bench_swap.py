"""``difflsrec bench swap``: what a hot swap costs the events that flow through it.

A worker serves a registry (version ``swap-a``, a copy of the given artifact) while a paced producer offers
ML-1M events in time order at a steady rate. Half-way through the measured period a new version
(``swap-b``: the same weights, so only the swap itself is measured, not a better model) is published the
way ``difflsrec bootstrap`` does it (staging dir, rename, ``LATEST``); the worker finds it by polling,
loads it off the event path and switches between two micro-batches. Every user's state then belongs to
the old version and is re-encoded from its bounded history at the user's next event, which is the real
price of a swap.

Reported: event-to-recommendation latency (producer send -> consumer receive) p50/p99/max for the events
sent in the 10 s before the first ``swap-b`` recommendation, the 2 s and 2-10 s after it, whether every
event was answered, the load time the worker logged, states re-encoded, and a PNG of latency over time.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difflsrec.settings import env_name
from stream.bench import BenchConfig, _broker, _run_settings, _start, replay_events
from stream.loadgen import HarnessLoop, OutputCollector, PacedProducer

log = logging.getLogger(__name__)

def windows(publish_started: float, switch: float) -> dict[str, tuple[float, float]]:
    """Latency windows by the time each event was sent: the 10 s before the publication began; from then until
    the switch (the harness writing the version as a bootstrap job on the same machine would, the worker loading
    it in the background, and the events queued behind the first batch the new version served); the 2 s after
    the switch and the 8 s after those. ``switch`` is when the first event the new version answered was sent.
    (Until 2026-12-07 the windows were cut at the *arrival* of the first new-version recommendation: every event
    of the batch that switched, and the events queued behind it, had been sent before that, so the swap's own
    pause was counted as "before" and the "swap" window could not show it.)"""
    return {
        "before publication (10 s)": (publish_started - 10.0, publish_started),
        "publication to switch": (publish_started, switch),
        "switch (0-2 s)": (switch, switch + 2.0),
        "after (2-10 s)": (switch + 2.0, switch + 10.0),
    }


@dataclass
class SwapConfig:
    artifact: Path
    ratings: Path | None = None
    rate: int = 500
    seconds: float = 40.0  # measured period; the new version is published half-way
    warmup: float = 5.0
    batch_max: int = 256
    batch_within: float = 0.02
    partitions: int = 4
    poll_interval: float = 0.5
    bootstrap: str | None = None


def _publish_copy(registry, artifact, version: str) -> float:
    """Publish ``artifact``'s weights as ``version`` (index included) and make it live; returns when."""
    from bootstrap.job import build_index
    from model.artifact import save_artifact

    def write(staging: Path) -> None:
        save_artifact(staging, artifact.model, artifact.stats, artifact.item_ids, data_hash=artifact.manifest.get("data_hash", ""), split=artifact.manifest.get("split", "loo"), version=version, histories=artifact.histories)
        build_index(artifact.model, artifact.item_ids, "flat").save(staging / "index")

    registry.publish(version, write)
    return time.time()


def _stats(latencies_ms: np.ndarray) -> dict:
    if not len(latencies_ms):
        return {"events": 0}
    return {"events": int(len(latencies_ms)), "p50_ms": float(np.percentile(latencies_ms, 50)), "p99_ms": float(np.percentile(latencies_ms, 99)), "max_ms": float(latencies_ms.max())}


def run_swap(cfg: SwapConfig, out: Path | None = None) -> dict:
    from bootstrap.registry import Registry
    from model.artifact import load_artifact

    warm_n, measured_n = int(cfg.rate * cfg.warmup), int(cfg.rate * cfg.seconds)
    events = replay_events(cfg.ratings, warm_n + measured_n)
    source = load_artifact(cfg.artifact)
    workdir = Path(tempfile.mkdtemp(prefix="difflsrec-bench-swap-"))
    published: dict[str, float] = {}
    try:
        with _broker(cfg.bootstrap) as (bootstrap, _):
            registry = Registry(workdir / "registry")
            _publish_copy(registry, source, "swap-a")
            bench = BenchConfig(artifact=registry.root, batch_max=cfg.batch_max, batch_within=cfg.batch_within, partitions=cfg.partitions)
            env = _run_settings(bench, bootstrap, workdir, "swap")
            env[env_name("model_poll_interval")] = str(cfg.poll_interval)
            sent_at: dict[int, float] = {}
            with ExitStack() as stack:  # unwound in reverse: the worker stops first, then the clients, then their loop
                loop = stack.enter_context(HarnessLoop())
                collector = stack.enter_context(OutputCollector(bootstrap, env[env_name("recommendations_topic")], loop, versions=True))
                producer = stack.enter_context(PacedProducer(bootstrap, env[env_name("interactions_topic")], loop, linger_ms=1, acks=1))
                process = _start(bench, "worker", env, workdir)
                stack.callback(process.stop)
                warmup = range(0, warm_n)
                producer.pace(events, warmup, cfg.rate, sent_at)
                collector.wait_for(warmup, timeout=60)
                phase = range(warm_n, warm_n + measured_n)
                def publish() -> None:
                    published["started"] = time.time()
                    published["swap-b"] = _publish_copy(registry, source, "swap-b")

                timer = threading.Timer(cfg.seconds / 2, publish)
                timer.start()
                producer.pace(events, phase, cfg.rate, sent_at)
                timer.join()
                complete = collector.wait_for(phase, timeout=120)
                metrics = process.metrics()
            worker_log = process.log_path.read_text(errors="replace")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    phase_ns = [n for n in phase if n in collector.received]
    new = [n for n in phase_ns if collector.versions[n] == "swap-b"]
    swapped_at = min(collector.received[n] for n in new) if new else None  # the first new-version list arrives
    switch = min(sent_at[n] for n in new) if new else None  # the first event the new version served was sent
    loaded = re.search(r"hot swap swap-a -> swap-b .*?in ([0-9.]+)s", worker_log)
    report = {
        "config": {k: str(v) for k, v in cfg.__dict__.items()},
        "events": len(phase), "answered": len(phase_ns), "complete": bool(complete),
        "published_at_s": published.get("swap-b", float("nan")) - sent_at[phase.start],
        "first_new_version_after_publish_s": (swapped_at - published["swap-b"]) if swapped_at and "swap-b" in published else None,
        "load_off_event_path_s": float(loaded.group(1)) if loaded else None,
        "states_reencoded": metrics.get("difflsrec_states_reencoded_total"),
        "versions_seen": sorted(set(collector.versions[n] for n in phase_ns)),
        "windows": {},
    }
    if switch is not None and "started" in published:
        report["publication_started_to_switch_s"] = switch - published["started"]
        for name, (lo, hi) in windows(published["started"], switch).items():
            ns = [n for n in phase_ns if lo <= sent_at[n] < hi]
            report["windows"][name] = _stats(np.array([collector.received[n] - sent_at[n] for n in ns]) * 1000)
    _print(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "swap.json").write_text(json.dumps(report, indent=2))
        t0 = sent_at[phase.start]
        _plot(out / "swap_latency.png", [(sent_at[n] - t0, 1000 * (collector.received[n] - sent_at[n])) for n in phase_ns],
              None if switch is None else switch - t0, cfg.rate, published["started"] - t0 if "started" in published else None)
    return report


def _print(report: dict) -> None:
    print(f"{report['answered']}/{report['events']} events answered; versions {report['versions_seen']}; "
          f"model loaded off the event path in {report['load_off_event_path_s']} s; first swap-b recommendation "
          f"{report['first_new_version_after_publish_s']} s after publication; states re-encoded: {report['states_reencoded']}")
    for name, s in report["windows"].items():
        if s.get("events"):
            print(f"  {name:>25}: {s['events']:5d} events  p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms")


def _plot(path: Path, points: list[tuple[float, float]], swap_s: float | None, rate: int, publish_s: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, ms = np.array(points).T
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter(t, ms, s=2, alpha=0.4, label="event -> recommendation")
    if publish_s is not None:
        ax.axvline(publish_s, color="grey", linestyle=":", label="publication of the new version begins")
    if swap_s is not None:
        ax.axvline(swap_s, color="red", linestyle="--", label="switch (first event the new version served was sent)")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the measured period began")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"Hot swap under a steady {rate} events/s")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
