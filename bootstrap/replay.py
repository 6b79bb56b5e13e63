"""``difflsrec replay``: publish a historical file to ``interactions`` in timestamp order while consuming
``recommendations``, and score the live system prequentially.

For every replayed event of a user we look at the most recent recommendation list that user had
*received* (consumed from the topic) before the event was published: a hit when the event's item is in
it. By default the replay is closed-loop per user (a user's next event is published once the list for
their previous one has come back, other users going on meanwhile), so every event but a user's first is
scored against a list that reflects all of that user's earlier events, whatever the pace; open loop
(``closed_loop=False``) publishes on the clock alone and scores whatever list had arrived. HR/NDCG/MRR@K are reported over all events (no list = miss) and over the events that had a list,
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
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bootstrap.history import HistoryTable, read_files
from difflsrec.progress import progress
from model.data.formats import ReadOptions

log = logging.getLogger(__name__)


@dataclass
class ReplayOptions:
    inputs: list[Path] = field(default_factory=list)
    read: ReadOptions = field(default_factory=ReadOptions)  # how the history files are read (format, item key, columns)
    start_after: float | None = None  # replay events from this time on: quantile in (0, 1) or epoch seconds
    users: int | None = None  # reproducible subset of users
    seed: int = 0
    max_events: int | None = None
    rate: float | None = None  # events per second
    speed: float | None = None  # timeline compression factor
    k: int = 10
    windows: int = 10
    drain_timeout: float = 30.0  # seconds without a new recommendation before giving up on the rest
    closed_loop: bool = True  # a user's next event waits for the list of their previous one (see _Session)
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
    table = read_files(opts.inputs, opts.read)
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


class _Session:
    """Sending events and receiving their recommendations, shared by the producing loop and the inbox
    thread. In closed-loop mode a user has at most one event in flight: their next event waits (other
    users' events go on) until the list for the previous one came back, as a person would see a list
    before acting again. Otherwise events go out as the pacing allows, whatever has come back."""

    def __init__(self, run_id: str, producer, n_events: int, k: int, closed_loop: bool):
        self.run_id, self.producer, self.k, self.closed_loop = run_id, producer, k, closed_loop
        self.lock = threading.Lock()
        self.latest: dict[str, list[str]] = {}
        self.sent_at: dict[str, float] = {}
        self.received_at: dict[str, float] = {}
        self.ranks: list[int | None] = [None] * n_events
        self.in_flight: dict[str, str] = {}  # user -> event id awaiting its list (closed loop)
        self.backlog: dict[str, deque] = defaultdict(deque)
        self.duplicates = 0
        self.hits = 0  # running count for the progress bar

    def offer(self, i: int, user: str, item: str, ts: int) -> None:
        with self.lock:
            if self.closed_loop and user in self.in_flight:
                self.backlog[user].append((i, user, item, ts))
            else:
                self._send(i, user, item, ts)

    def _send(self, i: int, user: str, item: str, ts: int) -> None:
        self.ranks[i] = rank_in_list(item, self.latest.get(user), self.k)
        self.hits += self.ranks[i] is not None and self.ranks[i] >= 0
        event_id = f"{self.run_id}{i}"
        self.sent_at[event_id] = time.time()
        if self.closed_loop:
            self.in_flight[user] = event_id
        self.producer.send({"user_id": user, "item_id": item, "timestamp": int(ts), "event_id": event_id})

    def receive(self, user: str, event_id: str, items: list[str], received: float) -> None:
        with self.lock:
            if event_id in self.received_at:
                self.duplicates += 1
                return
            self.received_at[event_id] = received
            self.latest[user] = items
            if self.closed_loop and self.in_flight.get(user) == event_id:
                del self.in_flight[user]
                if self.backlog[user]:
                    self._send(*self.backlog[user].popleft())

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.sent_at), len(self.received_at)


def _consume(session: _Session, reader, stop: threading.Event) -> None:
    from stream.schemas import Recommendation

    while not stop.is_set():
        for record, received in reader.poll(0.2):
            rec = Recommendation.model_validate_json(record.value)
            if (rec.event_id or "").startswith(session.run_id):
                session.receive(rec.user_id, rec.event_id, [item.item_id for item in rec.items], received)


def replay(opts: ReplayOptions, bootstrap_servers: str, interactions_topic: str = "interactions", recommendations_topic: str = "recommendations") -> dict:
    from stream.producer import EventProducer, TopicReader

    events = load_events(opts)
    n = len(events)
    if n == 0:
        raise ValueError("nothing to replay (empty input or nothing after start_after)")
    run_id = f"replay-{uuid.uuid4().hex[:8]}-"
    reader = TopicReader(bootstrap_servers, recommendations_topic, from_beginning=False)
    reader.wait_for_assignment()  # positioned at the end before the first event goes out
    producer = EventProducer(bootstrap_servers, interactions_topic, linger_ms=1)
    session = _Session(run_id, producer, n, opts.k, opts.closed_loop)
    stop = threading.Event()
    thread = threading.Thread(target=_consume, args=(session, reader, stop), name="replay-inbox", daemon=True)
    thread.start()
    started = time.time()
    bar = progress(total=n, desc="replay", unit="ev", disable=not opts.progress)
    try:
        t0_event = events.times[0]
        for i, (user, item, ts) in enumerate(zip(events.users, events.items, events.times)):
            _pace(opts, i, ts - t0_event, started)
            session.offer(i, user, item, ts)
            if i % 200 == 0:
                _progress(bar, session)
        producer.flush()
        _drain(session, n, opts.drain_timeout, bar)
    finally:
        stop.set()
        thread.join(5)
        producer.close()
        reader.close()
        bar.close()
    elapsed = time.time() - started
    sent, received = session.counts()
    latencies = [1000 * (session.received_at[e] - t) for e, t in session.sent_at.items() if e in session.received_at]
    was_sent = [i for i in range(n) if f"{run_id}{i}" in session.sent_at]  # all, unless a user's backlog stalled
    ranks = [session.ranks[i] for i in was_sent]
    report = {
        "n_events": n,
        "n_users": len(set(events.users)),
        "k": opts.k,
        "closed_loop": opts.closed_loop,
        **prequential_metrics(ranks),
        "windows": window_metrics(np.asarray(events.times)[was_sent], ranks, opts.windows),
        "latency_ms": latency_summary(latencies),
        "latency_histogram_ms": _histogram(latencies),
        "events_sent": sent,
        "recommendations_received": received,
        "missing_recommendations": n - received,
        "duplicate_recommendations": session.duplicates,
        "seconds": elapsed,
        "events_per_second": received / elapsed if elapsed > 0 else 0.0,
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


def _progress(bar, session: _Session) -> None:
    sent, received = session.counts()
    hr = session.hits / sent if sent else 0.0
    # no forced redraw: update() draws at the bar's own pace (a line a minute in a log, see difflsrec.progress)
    bar.set_postfix(sent=sent, lag=sent - received, HR=f"{hr:.3f}", refresh=False)
    bar.update(received - bar.n)


def _drain(session: _Session, n: int, timeout: float, bar) -> None:
    """Wait until every event was sent and answered, or ``timeout`` seconds pass without progress."""
    last, idle_since = -1, time.monotonic()
    while time.monotonic() - idle_since < timeout:
        sent, received = session.counts()
        if received >= n:
            _progress(bar, session)
            return
        if received != last:
            last, idle_since = received, time.monotonic()
        _progress(bar, session)
        time.sleep(0.2)
    log.warning("gave up waiting: %d of %d events have no recommendation after %.0fs without progress", n - last, n, timeout)


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
