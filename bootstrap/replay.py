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

Every event is checked with the worker's own rules (:func:`stream.schemas.check_event` with the worker
settings' limits, as ``difflsrec send`` does) before it goes out: one the worker would refuse is counted as
refused, with its reason, and never sent. The dead-letter topic is read beside ``recommendations``: a dead
letter of a sent event (a rule the worker's own settings make stricter, a processing error) is that event's
answer, so in closed loop the user's next event goes out. Refused and dead-lettered events are counted apart
(with their reasons) and left out of the metrics. An answer is matched to its event by the run's event id or
by the event's position (topic, partition, offset), which every recommendation and dead letter carries.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
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
    order = np.argsort(np.asarray(table.times, dtype=np.float64), kind="stable")
    table = HistoryTable([table.users[i] for i in order], [table.items[i] for i in order], [table.times[i] for i in order])
    if opts.start_after is not None:
        cut = table.time_quantile(opts.start_after) if 0 < opts.start_after < 1 else int(opts.start_after)
        table = table.filter_time(start=cut)
    if opts.users:
        chosen = set(np.random.default_rng(opts.seed).permutation(sorted(set(table.users)))[: opts.users])
        keep = [i for i, u in enumerate(table.users) if u in chosen]
        table = HistoryTable([table.users[i] for i in keep], [table.items[i] for i in keep], [table.times[i] for i in keep])
    if opts.max_events is not None:
        table = HistoryTable(table.users[: opts.max_events], table.items[: opts.max_events], table.times[: opts.max_events])
    return table


INTERRUPTED_CLOSE_SECONDS = 5.0  # how long an interrupted replay waits for its buffered events to go out


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into it) during a replay: ``report`` holds what was measured until then
    (``interrupted``: true). A KeyboardInterrupt, so a caller that stops on Ctrl-C still stops."""

    def __init__(self, report: dict):
        super().__init__("replay interrupted")
        self.report = report


#: seconds between two refreshes of the progress bar's counts, whatever the pace
REFRESH_SECONDS = 0.5
#: examples of refused and dead-lettered events kept in the report (beside the counts by reason)
EXAMPLES = 5


def check_options(opts: ReplayOptions) -> tuple[str, str] | None:
    """``(option, problem)`` for the first option out of range, None when all are fine. ``difflsrec replay``
    refuses them before anything starts; :func:`replay` raises ValueError."""
    def finite(value) -> bool:
        return value is None or math.isfinite(value)

    if opts.rate is not None and not (finite(opts.rate) and opts.rate > 0):
        return "--rate", f"events per second must be a positive number, not {opts.rate:g} (leave it out to publish as fast as possible)"
    if opts.speed is not None and not (finite(opts.speed) and opts.speed > 0):
        return "--speed", f"the timeline compression must be a positive number, not {opts.speed:g} (leave it out to publish as fast as possible)"
    if opts.rate is not None and opts.speed is not None:
        return "--speed/--rate", "give --speed or --rate, not both"
    if opts.max_events is not None and opts.max_events < 1:
        return "--max-events", f"must be at least 1, not {opts.max_events} (leave it out to replay every event)"
    if opts.users is not None and opts.users < 1:
        return "--users", f"must be at least 1, not {opts.users} (leave it out to replay every user)"
    if opts.k < 1:
        return "--k", f"the metrics' cut-off must be at least 1, not {opts.k}"
    if opts.windows < 1:
        return "--windows", f"must be at least 1, not {opts.windows}"
    if not (finite(opts.drain_timeout) and opts.drain_timeout > 0):
        return "--drain-timeout", f"must be a positive number of seconds, not {opts.drain_timeout:g}"
    if opts.start_after is not None and not (finite(opts.start_after) and opts.start_after >= 0):
        return "--start-after", f"a quantile in (0, 1) or epoch seconds, not {opts.start_after:g}"
    return None


class _Session:
    """Sending events and receiving their answers, shared by the producing loop, the inbox thread and the
    producer's delivery callbacks. In closed-loop mode a user has at most one event in flight: their next event
    waits (other users' events go on) until the answer to the previous one came back (a recommendation list, a
    dead letter, or Kafka's refusal to take the event), as a person would see a list before acting again.
    Otherwise events go out as the pacing allows, whatever has come back."""

    def __init__(self, run_id: str, producer, n_events: int, k: int, closed_loop: bool):
        self.run_id, self.producer, self.k, self.closed_loop = run_id, producer, k, closed_loop
        self.lock = threading.Lock()
        self.latest: dict[str, list[str]] = {}
        self.sent_at: dict[str, float] = {}
        self.user_of: dict[str, str] = {}  # event id -> user (to release the user's next event on any answer)
        self.index_of: dict[str, int] = {}  # event id -> index in the replayed events
        self.at_position: dict[tuple[str, int, int], str] = {}  # (topic, partition, offset) -> event id, on delivery
        self.received_at: dict[str, float] = {}
        self.dead: dict[str, tuple[str, str]] = {}  # event id -> (reason, detail) of its dead letter
        self.undelivered: dict[str, str] = {}  # event id -> Kafka's error
        self.refused: dict[int, tuple[str, str]] = {}  # index -> (reason, detail): never sent
        self.failures: queue.SimpleQueue = queue.SimpleQueue()  # (event id, error) from the producer's thread
        self.ranks: list[int | None] = [None] * n_events
        self.in_flight: dict[str, str] = {}  # user -> event id awaiting its answer (closed loop)
        self.backlog: dict[str, deque] = defaultdict(deque)
        self.duplicates = 0
        self.redelivered = 0  # recommendations flagged ``replay``: the worker had applied the event already
        self.hits = 0  # running count for the progress bar

    def refuse(self, i: int, reason: str, detail: str) -> None:
        with self.lock:
            self.refused[i] = (reason, detail)

    def offer(self, i: int, event) -> None:
        with self.lock:
            if self.closed_loop and event.user_id in self.in_flight:
                self.backlog[event.user_id].append((i, event))
            else:
                self._send(i, event)

    def _send(self, i: int, event) -> None:
        user = event.user_id
        self.ranks[i] = rank_in_list(event.item_id, self.latest.get(user), self.k)
        self.hits += self.ranks[i] is not None and self.ranks[i] >= 0
        event_id = f"{self.run_id}{i}"
        self.sent_at[event_id] = time.time()
        self.user_of[event_id], self.index_of[event_id] = user, i
        if self.closed_loop:
            self.in_flight[user] = event_id
        future = self.producer.send(event)  # checked, with this event id
        # run by the producer's thread (or here, at once, for a record it refuses outright): no lock taken
        future.add_callback(self._delivered, event_id)
        future.add_errback(lambda error, event_id=event_id: self.failures.put((event_id, str(error) or type(error).__name__)))

    def _delivered(self, event_id: str, meta) -> None:
        self.at_position[(meta.topic, meta.partition, meta.offset)] = event_id

    def _answered(self, event_id: str) -> bool:
        return event_id in self.received_at or event_id in self.dead or event_id in self.undelivered

    def _release(self, event_id: str) -> None:
        """The event has its answer: in closed loop, its user's next event goes out."""
        user = self.user_of[event_id]
        if self.closed_loop and self.in_flight.get(user) == event_id:
            del self.in_flight[user]
            if self.backlog[user]:
                self._send(*self.backlog[user].popleft())

    def _unscore(self, event_id: str) -> None:
        rank = self.ranks[self.index_of[event_id]]
        self.hits -= rank is not None and rank >= 0

    def event_id_of(self, event_id: str | None, position: tuple[str, int, int]) -> str | None:
        """This run's event an answer is about: by its position (known once Kafka confirmed the event), else by
        the event id the answer carries (an answer may arrive before the delivery callback ran); None when the
        answer is about some other producer's event."""
        found = self.at_position.get(position)
        if found is None and event_id and event_id.startswith(self.run_id) and event_id in self.sent_at:
            found = event_id
        return found

    def receive(self, event_id: str, items: list[str], received: float, redelivered: bool = False) -> None:
        with self.lock:
            if self._answered(event_id):
                self.duplicates += 1
                return
            self.received_at[event_id] = received
            self.redelivered += redelivered
            self.latest[self.user_of[event_id]] = items
            self._release(event_id)

    def dead_letter(self, event_id: str, reason: str, detail: str) -> None:
        with self.lock:
            if self._answered(event_id):
                self.duplicates += 1
                return
            self.dead[event_id] = (reason, detail)
            self._unscore(event_id)
            self._release(event_id)

    def drain_failures(self) -> None:
        """Events Kafka did not take (reported by the producer's thread): answered, with no list."""
        while True:
            try:
                event_id, error = self.failures.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                if not self._answered(event_id):
                    self.undelivered[event_id] = error
                    self._unscore(event_id)
                    self._release(event_id)

    def counts(self) -> tuple[int, int]:
        """(events sent, events answered: a list, a dead letter or a delivery error)."""
        with self.lock:
            return len(self.sent_at), len(self.received_at) + len(self.dead) + len(self.undelivered)


def _consume(session: _Session, readers: list, stop: threading.Event) -> None:
    from pydantic import ValidationError

    from stream.schemas import DeadLetter, Recommendation

    while not stop.is_set():
        session.drain_failures()
        for reader in readers:
            for record, received in reader.poll(0.2 if reader is readers[0] else 0.0):
                try:
                    if record.headers and any(key == "reason" for key, _ in record.headers):
                        letter = DeadLetter.from_message(record.value, record.headers, record.key)
                        event_id = session.event_id_of(_raw_event_id(letter.raw), (letter.topic, letter.partition, letter.offset))
                        if event_id is not None:
                            session.dead_letter(event_id, letter.reason.value, letter.detail)
                    else:
                        rec = Recommendation.model_validate_json(record.value or b"")
                        event_id = session.event_id_of(rec.event_id, (rec.source.topic, rec.source.partition, rec.source.offset))
                        if event_id is not None:
                            session.receive(event_id, [item.item_id for item in rec.items], received, rec.replay)
                except (ValidationError, KeyError, ValueError):
                    continue  # a record of neither shape: another producer's


def _raw_event_id(raw: bytes) -> str | None:
    """The event id in a dead letter's raw bytes (what this replay sent), None when there is none."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("event_id") if isinstance(value, dict) else None


def replay(opts: ReplayOptions, bootstrap_servers: str, interactions_topic: str = "interactions", recommendations_topic: str = "recommendations",
           dlq_topic: str = "interactions.dlq", limits=None) -> dict:
    """Replay and score; the report. ``limits``: the worker's event rules (default: ``WorkerSettings()``'s).
    Raises :class:`ReplayInterrupted` (with the report so far) on Ctrl-C."""
    from stream.producer import EventProducer, TopicReader
    from stream.schemas import check_event, oversize
    from stream.settings import WorkerSettings
    from stream.topics import ensure_topics, require_reachable

    if problem := check_options(opts):
        raise ValueError(f"{problem[0]}: {problem[1]}")
    if limits is None:
        limits = WorkerSettings().event_limits()
    require_reachable(bootstrap_servers)  # seconds, not kafka-python's 30 s of retries, when no broker answers
    # the topics as the worker creates them (its partition count), never auto-created by a reader below with the
    # broker's default count, which a worker started later would have to live with
    ensure_topics(WorkerSettings(bootstrap_servers=bootstrap_servers, interactions_topic=interactions_topic,
                                 recommendations_topic=recommendations_topic, dlq_topic=dlq_topic))
    events = load_events(opts)
    n = len(events)
    if n == 0:
        raise ValueError("nothing to replay (empty input or nothing after start_after)")
    run_id = f"replay-{uuid.uuid4().hex[:8]}-"
    readers = [TopicReader(bootstrap_servers, recommendations_topic, from_beginning=False, allow_auto_create_topics=False)]
    readers[0].wait_for_assignment()  # positioned at the end before the first event goes out
    try:
        dlq = TopicReader(bootstrap_servers, dlq_topic, from_beginning=False, allow_auto_create_topics=False)
        readers.append(dlq)
        dlq.wait_for_assignment(10.0)
    except TimeoutError:
        log.warning("no partition of the dead-letter topic %s: dead letters will not be seen (an event the worker rejects counts as unanswered)", dlq_topic)
        readers.pop().close()
    producer = EventProducer(bootstrap_servers, interactions_topic, linger_ms=1)
    session = _Session(run_id, producer, n, opts.k, opts.closed_loop)
    stop = threading.Event()
    thread = threading.Thread(target=_consume, args=(session, readers, stop), name="replay-inbox", daemon=True)
    thread.start()
    started = time.time()
    bar = progress(total=n, desc="replay", unit="ev", disable=not opts.progress)
    interrupted = False
    refreshed = [time.monotonic()]

    def refresh(force: bool = False) -> None:
        if force or time.monotonic() - refreshed[0] >= REFRESH_SECONDS:
            refreshed[0] = time.monotonic()
            _progress(bar, session)

    try:
        try:
            t0_event = events.times[0]
            for i, (user, item, ts) in enumerate(zip(events.users, events.items, events.times)):
                _pace(opts, i, ts - t0_event, started, refresh)
                body = json.dumps({"user_id": user, "item_id": item, "timestamp": ts, "event_id": f"{run_id}{i}"}).encode()
                checked = check_event(body, limits, check_size=False)  # the worker's rules, as `difflsrec send` checks
                if not isinstance(checked, tuple):
                    checked = oversize(EventProducer.encode(checked), limits) or checked
                if isinstance(checked, tuple):
                    session.refuse(i, checked[0].value, checked[1])
                else:
                    session.offer(i, checked)
                refresh()
            producer.flush()
            _drain(session, n, opts.drain_timeout, bar)
        except KeyboardInterrupt:
            interrupted = True
    finally:
        stop.set()
        thread.join(5)
        session.drain_failures()
        # after Ctrl-C the user wants out: a broker that has gone away kept close() waiting up to 120 s
        producer.close(timeout=INTERRUPTED_CLOSE_SECONDS if interrupted else None)
        for reader in readers:
            reader.close()
        bar.close()
    report = _report(opts, events, session, time.time() - started, interrupted)
    report["topics"] = {"interactions": interactions_topic, "recommendations": recommendations_topic, "dlq": dlq_topic}
    report["bootstrap_servers"] = bootstrap_servers
    if interrupted:
        raise ReplayInterrupted(report)
    return report


def _report(opts: ReplayOptions, events: HistoryTable, session: _Session, elapsed: float, interrupted: bool) -> dict:
    n, run_id = len(events), session.run_id
    with session.lock:
        sent_ids = set(session.sent_at)
        received, dead, undelivered = dict(session.received_at), dict(session.dead), dict(session.undelivered)
        refused = dict(session.refused)
        latencies = [1000 * (received[e] - t) for e, t in session.sent_at.items() if e in received]
        # scored: every event that went out and was neither dead-lettered nor refused by Kafka
        scored = [i for i in range(n) if (e := f"{run_id}{i}") in sent_ids and e not in dead and e not in undelivered]
        ranks = [session.ranks[i] for i in scored]
        duplicates, redelivered = session.duplicates, session.redelivered
    answered = len(received) + len(dead) + len(undelivered)
    never_sent = n - len(refused) - len(sent_ids)
    unanswered = len(sent_ids) - answered
    report = {
        "n_events": n,
        "n_users": len(set(events.users)),
        "k": opts.k,
        "closed_loop": opts.closed_loop,
        "interrupted": interrupted,
        **prequential_metrics(ranks),
        "windows": window_metrics(np.asarray(events.times)[scored], ranks, opts.windows),
        "latency_ms": latency_summary(latencies),
        "latency_histogram_ms": _histogram(latencies),
        "events_sent": len(sent_ids),
        "recommendations_received": len(received),
        # events that should have had a list and have none: sent and unanswered, or never sent (a closed loop's
        # user waiting for an answer that never came, or an interrupted replay)
        "missing_recommendations": unanswered + never_sent,
        "unanswered_events": unanswered,
        "events_never_sent": never_sent,
        "refused_events": len(refused),  # by the worker's rules, here: never sent
        "refused_reasons": dict(Counter(reason for reason, _ in refused.values())),
        "refused_examples": [{"index": i, "user_id": str(events.users[i]), "item_id": str(events.items[i]), "timestamp": events.times[i], "reason": r, "detail": d}
                             for i, (r, d) in sorted(refused.items())[:EXAMPLES]],
        "dead_letters": len(dead),  # sent, and rejected by the worker
        "dead_letter_reasons": dict(Counter(reason for reason, _ in dead.values())),
        "dead_letter_examples": [{"index": session.index_of[e], "event_id": e, "reason": r, "detail": d} for e, (r, d) in sorted(dead.items(), key=lambda kv: session.index_of[kv[0]])[:EXAMPLES]],
        "undelivered_events": len(undelivered),  # Kafka did not take them
        "undelivered_examples": [{"event_id": e, "error": err} for e, err in list(undelivered.items())[:EXAMPLES]],
        "duplicate_recommendations": duplicates,
        "redelivered_recommendations": redelivered,
        "seconds": elapsed,
        "events_per_second": len(received) / elapsed if elapsed > 0 else 0.0,
        "options": {**asdict(opts), "inputs": [str(p) for p in opts.inputs]},
    }
    return report


def _histogram(values: list[float], bins: int = 50) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _pace(opts: ReplayOptions, i: int, event_offset_s: float, started: float, on_wait=None) -> None:
    """Sleep until event ``i`` is due; ``on_wait()`` at least every REFRESH_SECONDS meanwhile (the progress bar)."""
    if opts.rate:
        target = started + i / opts.rate
    elif opts.speed:
        target = started + event_offset_s / opts.speed
    else:
        return
    while (delay := target - time.time()) > 0:
        time.sleep(min(delay, REFRESH_SECONDS))
        if on_wait is not None:
            on_wait()


def _progress(bar, session: _Session) -> None:
    sent, answered = session.counts()
    hr = session.hits / sent if sent else 0.0
    # no forced redraw: update() draws at the bar's own pace (a line a minute in a log, see difflsrec.progress)
    bar.set_postfix(sent=sent, lag=sent - answered, HR=f"{hr:.3f}", refresh=False)
    bar.update(answered + len(session.refused) - bar.n)


def _drain(session: _Session, n: int, timeout: float, bar) -> None:
    """Wait until every event was sent (or refused) and answered, or ``timeout`` seconds pass without progress."""
    last, idle_since = -1, time.monotonic()
    while time.monotonic() - idle_since < timeout:
        session.drain_failures()
        sent, answered = session.counts()
        done = answered + len(session.refused)
        if done >= n:
            _progress(bar, session)
            return
        if done != last:
            last, idle_since = done, time.monotonic()
        _progress(bar, session)
        time.sleep(0.2)
    log.warning("gave up waiting: %d of %d events have no answer after %.0fs without progress", n - last, n, timeout)


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
