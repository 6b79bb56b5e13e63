"""The Faust worker: interactions -> micro-batches -> user states (RocksDB table) -> engine -> recommendations.

Run it with ``difflsrec worker`` (which also creates the topics and picks the ``event_loop`` setting's
loop), or ``faust -A stream.app -L uvloop worker`` with the same ``DIFFLSREC_*`` environment (the topics must
exist then).

At-least-once: Faust acks the events of a ``take_events`` batch when the loop body ends, *whether it
returns, raises or is cancelled*, and commits acked offsets after flushing the producer (with a flush
that really drains the buffer: stream/delivery.py). A body that stopped half-way would lose events, so
a batch is all or nothing: its output (one message per event, the table writes) is enqueued with ``send_soon``, without an ``await`` in between; the one ``await`` (the
engine's thread) comes before any output, and a cancellation arriving there waits for the engine and
enqueues the output before it goes through; failures are served event by event, never raised. Either
the process dies before the batch's offsets are committed and its events come back (the state's last
applied offsets turn those redeliveries into ``replay`` messages without advancing the state again), or
everything it produced is flushed before the commit.

Tables are routed by Faust to the RocksDB partition of ``current_event()``. Inside a ``take`` batch that is
not the event of the user being read or written, so each user's read and write runs with that user's own
event as current (:func:`as_current`); otherwise a user's state would land in the store and changelog
partition of whichever event happened to be current, and a rebalance would hand it to the wrong worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import weakref
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from time import perf_counter, thread_time

import faust
from faust.streams import _current_event
from faust.types import EventT, StreamT

from stream.consumer import use_worker_consumer
from stream.delivery import drain_before_commit
from stream.engine import BatchResult, Engine, ModelBundle, SourcedEvent, resolve_artifact
from stream.hotswap import ModelSwapper
from stream.logs import summarise_repeats
from stream.metrics import WorkerMetrics
from stream.recovery import OrderedRecoveryTableManager
from stream.schemas import DeadLetter, Reason, dump_recommendation, parse_event
from stream.settings import WorkerSettings
from stream.state import StateFormatError, UserState, decode_state, encode_state
from stream.table_store import STORE_URL, bytes_table  # importing it registers the store with Faust

log = logging.getLogger(__name__)

USERS_TABLE = "users"


@contextmanager
def as_current(event: EventT):
    """Make ``event`` Faust's current event in this task only. Faust keeps it in a context variable
    (``faust.streams._current_event``, read by ``current_event()``); ``Stream._set_current_event`` would
    also overwrite the stream's shared ``current_event`` attribute, which the take buffer's filling task
    reads at the same time."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class StreamWorker:
    """One worker process: the Faust app with its topics, table, agent, views and the serving engine."""

    def __init__(self, settings: WorkerSettings, bundle: ModelBundle, partitions: int | None = None):
        self.settings = settings
        self.partitions = partitions or settings.partitions
        self.metrics = WorkerMetrics()
        self.metrics.set_model_version(bundle.version)
        self.metrics.watch_gc()
        self.engine = Engine(
            bundle, top_n=settings.top_n, exclude_seen=settings.exclude_seen, history_len=settings.history_len, fuse_every_event=settings.fuse_every_event,
            seed_states=settings.seed_states,
        )
        self.limits = settings.event_limits()
        self.app = self._create_app()
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.interactions = self.app.topic(settings.interactions_topic, partitions=self.partitions, **raw)
        self.recommendations = self.app.topic(settings.recommendations_topic, partitions=self.partitions, **raw)
        self.dlq = self.app.topic(settings.dlq_topic, partitions=self.partitions, **raw)
        # keys: the user id's UTF-8 bytes, as in the source topic (bytes = Faust's raw codec, so the key
        # hashes to the same partition as the events; str would be JSON-quoted); values: stream/state.py
        self.users = bytes_table(self.app, USERS_TABLE, self.partitions, wal=settings.store_wal)  # RocksDB's write-ahead log only with STORE_WAL
        self.executor = None
        if settings.engine_thread:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="engine")
            # Between its GIL-free calls the engine thread needs the GIL back, and with Faust's Python
            # busy in the loop thread it waits up to the switch interval each time: 5 ms by default, which
            # doubled an engine batch's wall time (p50 9-14 -> 5-6.5 ms with 1 ms, measured on 40-event batches)
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self.app.agent(self.interactions, name="serve")(self._agent)
        self.app.timer(settings.log_every, name="log-counts")(self._log_counts)
        self.swapper = ModelSwapper(self, bundle.device)
        if settings.hot_swap:
            self.app.task(self.swapper.follow_announcements)
            self.app.timer(settings.model_poll_interval, name="registry-poll")(self.swapper.poll_registry)
        from stream.web import register_views

        register_views(self)

    def _create_app(self) -> faust.App:
        return create_faust_app(self.settings, self.partitions, store=STORE_URL, topic_replication_factor=self.settings.replication_factor)

    @property
    def bundle(self) -> ModelBundle:
        return self.engine.bundle

    # ---- the agent ----------------------------------------------------------------------------------
    async def _agent(self, stream: StreamT) -> None:
        # Events are acked only by take_events, after the batch that holds them. When take_events ends (the
        # worker stopping) it restores the stream's enable_acks, and Faust's background drainer then goes on
        # pulling events already fetched into the stream and acks each one that nobody processed; the final
        # commit made them lost for good (a SIGTERM restart test caught it). With acks off, they come back.
        stream.enable_acks = False
        async for events in stream.take_events(self.settings.batch_max, within=self.settings.batch_within):
            await self.handle_batch(events)

    async def handle_batch(self, events: list[EventT]) -> None:
        started, cpu_started = perf_counter(), thread_time()
        self.metrics.events_in.inc(len(events))
        valid: list[SourcedEvent] = []
        owners: list[EventT] = []
        for event in events:
            message = event.message
            try:
                parsed = parse_event(message.key, message.value, self.limits)
            except Exception as error:
                # an exception out of here crashed the agent, and Faust committed the whole batch unserved
                # (a 400-digit timestamp did): a record the parser cannot handle is one dead letter
                log.exception("parsing %s/%d/%d failed", message.topic, message.partition, message.offset)
                parsed = (Reason.PROCESSING_ERROR, f"{type(error).__name__}: {error}")
            if isinstance(parsed, tuple):
                self._dead_letter(event, *parsed)
                continue
            timestamp_ms = int(round((message.timestamp or 0.0) * 1000))
            valid.append(SourcedEvent(parsed, message.topic, message.partition, message.offset, timestamp_ms))
            owners.append(event)
        self.metrics.stage_seconds.labels("parse").inc(thread_time() - cpu_started)
        if valid:
            await self._serve_isolating_failures(valid, owners)
        self.metrics.batch_seconds.observe(perf_counter() - started)
        self.metrics.batch_size.observe(len(valid))
        log.debug("batch: %d events, %d valid, %.1f ms", len(events), len(valid), 1000 * (perf_counter() - started))

    async def _serve_isolating_failures(self, valid: list[SourcedEvent], owners: list[EventT]) -> None:
        """Serve the batch; if anything fails, serve its events one at a time, so that an event that fails
        on its own goes to the DLQ (raw bytes and error) while the others are served. Raising instead would
        let Faust ack the whole batch unserved. A retried event that the failed attempt had already applied
        is recognised as a replay (the state's last offsets), so retrying cannot apply it twice."""
        try:
            states, event_of_user = self._read_states(valid, owners)
            result = await self._compute(valid, states, event_of_user)
            self._publish_and_write(result, event_of_user)
            return
        except Exception:
            log.exception("a batch of %d events failed; serving them one at a time", len(valid))
        for sourced, event in zip(valid, owners):
            try:
                states, event_of_user = self._read_states([sourced], [event])
                self._publish_and_write(self.engine.process([sourced], states), event_of_user)
            except Exception as error:
                log.exception("event %s/%d/%d failed", sourced.topic, sourced.partition, sourced.offset)
                self._dead_letter(event, Reason.PROCESSING_ERROR, f"{type(error).__name__}: {error}")

    async def _compute(self, valid: list[SourcedEvent], states, event_of_user) -> BatchResult:
        """The engine, in its own thread when configured: the scripted/traced model and FAISS release the
        GIL, so fetching and producing go on meanwhile (the table stays with the event loop's thread)."""
        if self.executor is None:
            return self.engine.process(valid, states)
        future = self.executor.submit(self.engine.process, valid, states)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # Faust acks the batch's events however this body ends, cancellation included: finish the
            # batch (waiting for the thread) before letting the cancellation through
            self._publish_and_write(future.result(), event_of_user)
            raise

    def _read_states(self, valid: list[SourcedEvent], owners: list[EventT]) -> tuple[dict, dict[str, EventT]]:
        started = thread_time()
        event_of_user: dict[str, EventT] = {}
        for sourced, event in zip(valid, owners):
            event_of_user[sourced.event.user_id] = event
        states = {user: self._read_state(event, user) for user, event in event_of_user.items()}
        self.metrics.stage_seconds.labels("state_read").inc(thread_time() - started)
        return states, event_of_user

    def _publish_and_write(self, result: BatchResult, event_of_user: dict[str, EventT]) -> None:
        """One message per event, then the users' new states (with their latest list) into the table; all
        enqueued without an await, so a batch's output is complete before Faust can ack its events."""
        t0 = thread_time()
        latest: dict[str, bytes] = {}
        strategies: dict[str, int] = defaultdict(int)
        for rec in result.recommendations:
            payload = dump_recommendation(rec)
            user = rec["user_id"]
            latest[user] = payload
            self.recommendations.send_soon(key=user.encode(), value=payload)
            strategies[rec["strategy"]] += 1
            self.metrics.latency.observe(max(0.0, rec["emit_time"] - rec["source"]["timestamp_ms"] / 1000.0))
        t1 = thread_time()
        for user, state in result.states.items():
            state.latest = latest.get(user, state.latest)
            with as_current(event_of_user[user]):  # the user's own partition
                self.users[user.encode()] = encode_state(state)
        t2 = thread_time()
        self._count(result, strategies)
        stages = self.metrics.stage_seconds
        for stage, seconds in result.timings.items():
            stages.labels(stage).inc(seconds)
        stages.labels("publish").inc(t1 - t0)
        stages.labels("state_write").inc(t2 - t1)

    def _read_state(self, event: EventT, user: str) -> UserState | None:
        with as_current(event):  # the user's own partition
            raw = self.users.get(user.encode())
        if raw is None:
            return None
        try:
            return decode_state(raw)
        except StateFormatError as error:
            # one unreadable value must not stop the partition: the user starts afresh (and it is counted)
            log.error("user %r: %s; starting from an empty state", user, error)
            self.metrics.state_errors.inc()
            return None

    def _dead_letter(self, event: EventT, reason: Reason, detail: str) -> None:
        m = event.message
        letter = DeadLetter.of(m.value, key=m.key, reason=reason, detail=detail, topic=m.topic, partition=m.partition, offset=m.offset, rejected_at=time.time())
        self.dlq.send_soon(key=letter.key, value=letter.raw, headers=letter.headers())
        self.metrics.dead_letters.labels(reason.value).inc()
        log.debug("dead letter %s/%d/%d: %s (%s)", m.topic, m.partition, m.offset, reason.value, detail)

    def _count(self, result: BatchResult, strategies: dict[str, int]) -> None:
        c, m = result.counts, self.metrics
        for strategy, count in strategies.items():
            m.recommendations_out.labels(strategy).inc(count)
        m.events_applied.inc(c.applied)
        m.events_replayed.inc(c.replayed)
        m.unknown_items.inc(c.unknown_items)
        m.new_users.inc(c.new_users)
        m.seeded.inc(c.seeded)
        m.reencoded.inc(c.reencoded)

    async def _log_counts(self) -> None:
        t = self.metrics.totals()
        log.info(
            "events in %d, applied %d, replayed %d, unknown items %d, recommendations out %d, dead letters %d (model %s)",
            t["difflsrec_events_in"], t["difflsrec_events_applied"], t["difflsrec_events_replayed"],
            t["difflsrec_unknown_item_events"], t["difflsrec_recommendations_out"], t["difflsrec_dead_letters"], self.bundle.version,
        )


def create_faust_app(s: WorkerSettings, partitions: int, **extra) -> faust.App:
    """The Faust app of the worker and of the benchmark's pass-through: the same consumer (fetch settings
    included), producer and delivery guarantee; ``extra``: further Faust settings (the worker's store)."""
    app = faust.App(s.app_id, **_app_options(s, partitions), **extra)
    use_worker_consumer(app, s.fetch_min_bytes, s.fetch_max_wait, s.commit_timeout)  # before anything resolves the transport
    # Faust blocks fetching once more than 100 messages wait in its producer buffer (logging a warning
    # each time); one batch legitimately enqueues a table write per user and a message per event.
    app.producer.buffer.max_messages = max(100, 4 * s.batch_max)
    drain_before_commit(app)  # no offset is committed while its output still waits in the buffer
    return app


def _app_options(s: WorkerSettings, partitions: int) -> dict:
    return dict(
        broker=[f"kafka://{address.strip()}" for address in s.bootstrap_servers.split(",")],
        datadir=str(s.datadir),
        autodiscover=False,
        TableManager=OrderedRecoveryTableManager,  # no input event skipped after a recovery: stream/recovery.py
        processing_guarantee="at_least_once",  # never exactly_once: Faust's has open bugs (duplicates on rebalance, fenced producers) and needs 3 brokers
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=s.heartbeat_interval,
        broker_rebalance_timeout=s.rebalance_timeout,
        broker_commit_interval=s.commit_interval,
        producer_linger=s.producer_linger,
        web_enabled=True,
        web_bind=s.web_host,
        web_host=s.advertised_host,
        web_port=s.web_port,
        # the address other workers forward per-user requests to: with the wildcard bind address (compose's
        # 0.0.0.0) it used to be http://0.0.0.0:6066, which every other worker reached as itself
        canonical_url=f"http://{s.advertised_host}:{s.web_port}",
    )


def use_event_loop(name: str) -> str:
    """Make ``name`` ("uvloop" or "asyncio") the event loop policy of this process; the loop in use.
    Call it before the Faust app is created, as ``faust -L uvloop`` does at import."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: the worker runs on asyncio's own event loop")
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return name


#: exit code of a worker whose graceful stop overran ``stop_timeout`` (see ``_DeadlineWorker``)
EXIT_STOP_DEADLINE = 3


class _DeadlineWorker(faust.Worker):
    """Faust's worker with a deadline on the graceful stop that SIGTERM/SIGINT start.

    A stop can wait on the broker without end or for minutes: aiokafka retries a commit and waits for the
    acknowledgement of pending output for as long as the broker is away, and a broker that no longer answers
    (frozen, partitioned) holds the consumer's LeaveGroup for its request timeout, then mode waits 60 s for
    the consumer thread (measured: 90 s to stop with a frozen broker; stream/consumer.py has the rest). A
    supervisor then SIGKILLs the worker anyway; here the worker exits by itself, logging why, with
    :data:`EXIT_STOP_DEADLINE`. That is the outcome of SIGKILL, which the restart tests show loses nothing:
    offsets are committed only after their output is on the broker, and the RocksDB store survives a kill.
    """

    def __init__(self, *args, stop_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop_timeout = stop_timeout

    def _schedule_shutdown(self, signal) -> None:
        if not self._signal_stop_time:  # the first signal starts the stop and its deadline
            deadline = threading.Timer(self.stop_timeout, self._stop_overran)
            deadline.daemon = True
            deadline.start()
        super()._schedule_shutdown(signal)

    def _stop_overran(self) -> None:
        log.error(
            "the graceful stop did not finish within %.0f s (stop_timeout; is the broker reachable?): exiting now with code %d; "
            "uncommitted events will be delivered again", self.stop_timeout, EXIT_STOP_DEADLINE,
        )
        logging.shutdown()  # flush the log handlers: os._exit skips every clean-up
        os._exit(EXIT_STOP_DEADLINE)


def settle_heap(threshold: tuple[int, int, int] | None) -> None:
    """Collect, freeze what is left, and set the collector's thresholds (None: Python's own).

    torch, faiss and Faust leave a large heap of long-lived objects; frozen, the garbage collector stops
    rescanning them on every full collection (unfrozen, collections cost as much as the model per batch).
    The thresholds: with many users per batch, state decoding, messages and Faust's bookkeeping allocate
    enough container objects that Python's own (700, 10, 10) collected ~40 us per event (gc0 + gc1 + gc2 in
    ``difflsrec bench stream --interleave 1000``); (50000, 20, 100) brought that to ~5 us (stream/README.md)."""
    import gc

    gc.collect()
    gc.freeze()
    if threshold is not None:
        gc.set_threshold(*threshold)


def run_faust_worker(app: faust.App, profile=None, loglevel: str = "info", *, stop_timeout: float, log_repeat_window: float, gc_threshold: tuple[int, int, int] | None = None) -> None:
    """Run ``app`` as a Faust worker until it stops (the worker and the benchmark's pass-through alike).
    ``profile``: write a cProfile of the whole run to this path; ``stop_timeout``: seconds a graceful stop
    may take before the process exits with :data:`EXIT_STOP_DEADLINE`; ``log_repeat_window``: seconds for
    which the Kafka client's repeated log records are held back and counted (0: every one is logged);
    ``gc_threshold``: the garbage collector's thresholds once the heap is frozen (:func:`settle_heap`)."""
    import cProfile

    # aiokafka's module loggers exist already: stream.consumer imports it
    repeated = summarise_repeats(log_repeat_window)
    if repeated is not None:
        @app.timer(log_repeat_window)
        async def report_repeated_log_records() -> None:  # a flood that stops is still accounted for
            repeated.flush()

    settle_heap(gc_threshold)
    worker = _DeadlineWorker(app, loglevel=loglevel, redirect_stdouts=False, stop_timeout=stop_timeout)

    @app.task
    async def report_event_loop() -> None:  # once Faust has set up logging
        loop = asyncio.get_running_loop()
        log.info("event loop: %s.%s", type(loop).__module__, type(loop).__qualname__)

    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    try:
        worker.execute_from_commandline()
    finally:  # execute_from_commandline ends with SystemExit after a clean stop
        if repeated is not None:
            repeated.flush(everything=True)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)


def load_bundle(settings: WorkerSettings) -> ModelBundle:
    from difflsrec.settings import resolve_device
    from index.faiss_blas import blas_report, faiss

    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
        faiss.omp_set_num_threads(settings.threads)
    log.info(blas_report())
    path = resolve_artifact(settings.artifact or settings.registry_dir)
    bundle = ModelBundle.load(path, resolve_device(settings.device), settings.inference_steps, settings.index_kind)
    log.info("serving model %s from %s (%d items, %d inference steps, index %r)", bundle.version, path, len(bundle.index), bundle.model.config.inference_steps, bundle.index)
    return bundle


def create_app(settings: WorkerSettings | None = None, bundle: ModelBundle | None = None, partitions: int | None = None) -> faust.App:
    settings = settings or WorkerSettings()
    return StreamWorker(settings, bundle or load_bundle(settings), partitions).app


def __getattr__(name: str):
    # `faust -A stream.app worker` looks up `app`; build it (and load the model) only then, not on import
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
