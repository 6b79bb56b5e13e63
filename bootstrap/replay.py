"""``difflsrec replay``: publish a historical file to ``interactions`` in timestamp order while consuming
``recommendations``, and score the live system prequentially.

For every replayed event of a user we look at the most recent recommendation list that user had
*received* (consumed from the topic) before the event was published: a hit when the event's item is in
it. HR/NDCG/MRR@K are reported over all events (no list = miss) and over the events that had a list,
overall and per time window, with the share of events that had a list and the event-produced ->
recommendation-consumed latency. Pacing: as fast as possible (default), ``rate`` events/s, or the
original timeline compressed ``speed`` times.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bootstrap.history import HistoryTable, read_files
from model.data.formats import ReadOptions

log = logging.getLogger(__name__)


@dataclass
class ReplayOptions:
    inputs: list[Path] = field(default_factory=list)
    format: str = "auto"
    start_after: float | None = None  # replay events from this time on: quantile in (0, 1) or epoch seconds
    users: int | None = None  # reproducible subset of users
    seed: int = 0
    max_events: int | None = None
    rate: float | None = None  # events per second
    speed: float | None = None  # timeline compression factor
    k: int = 10
    windows: int = 10
    drain_timeout: float = 30.0  # seconds to wait for outstanding recommendations after the last event
    progress: bool = True


# ---- the metric, pure ---------------------------------------------------------------------------------
def rank_in_list(item: str, recommended: list[str] | None, k: int) -> int | None:
    """0-based rank of ``item`` in the first k entries, -1 for a miss, None when there was no list."""
    if recommended is None:
        return None
    top = recommended[:k]
    return top.index(item) if item in top else -1


def prequential_metrics(ranks: list[int | None]) -> dict:
    """ranks: per event, 0-based hit rank, -1 (list, miss) or None (no list yet)."""
    n = len(ranks)
    with_list = [r for r in ranks if r is not None]
    hits = [r for r in with_list if r >= 0]
    hr = len(hits)
    ndcg = sum(1.0 / math.log2(r + 2) for r in hits)
    mrr = sum(1.0 / (r + 1) for r in hits)

    def block(denominator: int) -> dict:
        d = max(1, denominator)
        return {"HR": hr / d, "NDCG": ndcg / d, "MRR": mrr / d, "n": denominator}

    return {"all_events": block(n), "events_with_list": block(len(with_list)), "share_with_list": len(with_list) / n if n else 0.0}


def window_metrics(times: np.ndarray, ranks: list[int | None], windows: int) -> list[dict]:
    """Metrics over equal-count windows of the event timeline."""
    out = []
    for chunk in np.array_split(np.arange(len(ranks)), max(1, min(windows, len(ranks)))):
        if len(chunk):
            m = prequential_metrics([ranks[i] for i in chunk])
            out.append({"start": int(times[chunk[0]]), "end": int(times[chunk[-1]]), **m})
    return out


def latency_summary(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {"n": 0}
    a = np.asarray(latencies_ms)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "max": float(a.max()), "mean": float(a.mean())}


# ---- the replay ---------------------------------------------------------------------------------------
def load_events(opts: ReplayOptions) -> HistoryTable:
    table = read_files(opts.inputs, ReadOptions(format=opts.format))
    order = np.argsort(np.asarray(table.times, dtype=np.int64), kind="stable")
    table = HistoryTable([table.users[i] for i in order], [table.items[i] for i in order], [table.times[i] for i in order])
    if opts.start_after is not None:
        cut = table.time_quantile(opts.start_after) if 0 < opts.start_after < 1 else int(opts.start_after)
        table = table.filter_time(start=cut)
    if opts.users:
        chosen = set(np.random.default_rng(opts.seed).permutation(sorted(set(table.users)))[: opts.users])
        keep = [i for i, u in enumerate(table.users) if u in chosen]
        table = HistoryTable([table.users[i] for i in keep], [table.items[i] for i in keep], [table.times[i] for i in keep])
    if opts.max_events:
        table = HistoryTable(table.users[: opts.max_events], table.items[: opts.max_events], table.times[: opts.max_events])
    return table


class _Inbox:
    """Recommendations consumed so far: the latest list per user and the receive time per source event."""

    def __init__(self, run_id: str, reader):
        self.run_id, self.reader = run_id, reader
        self.latest: dict[str, list[str]] = {}
        self.received_at: dict[str, float] = {}
        self.duplicates = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        from stream.schemas import Recommendation

        while not self.stop.is_set():
            for record, received in self.reader.poll(0.2):
                rec = Recommendation.model_validate_json(record.value)
                if not (rec.event_id or "").startswith(self.run_id):
                    continue
                with self.lock:
                    self.latest[rec.user_id] = [item.item_id for item in rec.items]
                    if rec.event_id in self.received_at:
                        self.duplicates += 1
                    else:
                        self.received_at[rec.event_id] = received


def replay(opts: ReplayOptions, bootstrap_servers: str, interactions_topic: str = "interactions", recommendations_topic: str = "recommendations") -> dict:
    from stream.producer import EventProducer, TopicReader

    events = load_events(opts)
    if len(events) == 0:
        raise ValueError("nothing to replay (empty input or nothing after start_after)")
    run_id = f"replay-{uuid.uuid4().hex[:8]}-"
    reader = TopicReader(bootstrap_servers, recommendations_topic, from_beginning=False)
    while not reader._consumer.assignment():  # be positioned at the end before the first event goes out
        reader.poll(0.1)
    for tp in reader._consumer.assignment():
        reader._consumer.position(tp)
    inbox = _Inbox(run_id, reader)
    thread = threading.Thread(target=inbox.run, name="replay-inbox", daemon=True)
    thread.start()

    ranks: list[int | None] = []
    sent_at: dict[str, float] = {}
    started = time.time()
    bar = tqdm(total=len(events), desc="replay", unit="ev", disable=not opts.progress)
    try:
        with EventProducer(bootstrap_servers, interactions_topic) as producer:
            t0_event = events.times[0]
            for i, (user, item, ts) in enumerate(zip(events.users, events.items, events.times)):
                _pace(opts, i, ts - t0_event, started)
                with inbox.lock:
                    ranks.append(rank_in_list(item, inbox.latest.get(user), opts.k))
                event_id = f"{run_id}{i}"
                sent_at[event_id] = time.time()
                producer.send({"user_id": user, "item_id": item, "timestamp": int(ts), "event_id": event_id})
                if i % 200 == 0:
                    _progress(bar, i + 1, inbox, ranks)
            producer.flush()
        _progress(bar, len(events), inbox, ranks)
        _drain(inbox, sent_at, opts.drain_timeout, bar, ranks)
    finally:
        inbox.stop.set()
        thread.join(5)
        reader.close()
        bar.close()
    elapsed = time.time() - started
    latencies = [1000 * (inbox.received_at[e] - sent_at[e]) for e in sent_at if e in inbox.received_at]
    report = {
        "n_events": len(events),
        "n_users": len(set(events.users)),
        "k": opts.k,
        **prequential_metrics(ranks),
        "windows": window_metrics(np.asarray(events.times), ranks, opts.windows),
        "latency_ms": latency_summary(latencies),
        "latency_histogram_ms": _histogram(latencies),
        "recommendations_received": len(inbox.received_at),
        "missing_recommendations": len(sent_at) - len(inbox.received_at),
        "duplicate_recommendations": inbox.duplicates,
        "seconds": elapsed,
        "events_per_second": len(events) / elapsed if elapsed > 0 else 0.0,
        "options": {**asdict(opts), "inputs": [str(p) for p in opts.inputs]},
    }
    return report


def _histogram(values: list[float], bins: int = 50) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _pace(opts: ReplayOptions, i: int, event_offset_s: float, started: float) -> None:
    if opts.rate:
        target = started + i / opts.rate
    elif opts.speed:
        target = started + event_offset_s / opts.speed
    else:
        return
    delay = target - time.time()
    if delay > 0:
        time.sleep(delay)


def _progress(bar, sent: int, inbox: _Inbox, ranks) -> None:
    with inbox.lock:
        received = len(inbox.received_at)
    m = prequential_metrics(ranks)
    bar.n = sent
    bar.set_postfix(recs=received, lag=sent - received, HR=f"{m['all_events']['HR']:.3f}")
    bar.refresh()


def _drain(inbox: _Inbox, sent_at: dict, timeout: float, bar, ranks) -> None:
    """Wait until every event has its recommendation, or ``timeout`` seconds pass without progress."""
    last, idle_since = -1, time.monotonic()
    while time.monotonic() - idle_since < timeout:
        with inbox.lock:
            received = len(inbox.received_at)
        if received >= len(sent_at):
            return
        if received != last:
            last, idle_since = received, time.monotonic()
        _progress(bar, len(sent_at), inbox, ranks)
        time.sleep(0.2)
    log.warning("gave up waiting: %d of %d events have no recommendation after %.0fs", len(sent_at) - last, len(sent_at), timeout)


def write_report(report: dict, out: Path) -> None:
    """replay.json plus PNG plots: metrics over the timeline, latency histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.json").write_text(json.dumps(report, indent=2))
    windows = report["windows"]
    x = np.arange(1, len(windows) + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for metric in ("HR", "NDCG", "MRR"):
        ax.plot(x, [w["all_events"][metric] for w in windows], marker="o", label=f"{metric}@{report['k']}")
    ax.plot(x, [w["share_with_list"] for w in windows], linestyle="--", color="grey", label="share of events with a list")
    ax.set_xlabel("timeline window (equal event counts, oldest first)")
    ax.set_ylabel("prequential metric")
    ax.set_title(f"Replay: {report['n_events']} events, {report['n_users']} users")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_over_time.png", dpi=120)
    plt.close(fig)
    hist = report["latency_histogram_ms"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if hist["counts"]:
        ax.stairs(hist["counts"], hist["edges"], fill=True, color="tab:blue")
    s = report["latency_ms"]
    if s.get("n"):
        for q in ("p50", "p99"):
            ax.axvline(s[q], color="tab:red" if q == "p99" else "tab:green", linestyle="--", label=f"{q} = {s[q]:.1f} ms")
        ax.legend()
    ax.set_xlabel("event produced -> recommendation consumed (ms)")
    ax.set_ylabel("events")
    ax.set_title("Replay latency")
    fig.tight_layout()
    fig.savefig(out / "latency_hist.png", dpi=120)
    plt.close(fig)
