"""The Kafka consumer Faust runs for the worker: the two fetch settings Faust does not expose, a bound on
how long an offset commit may wait for the broker, and a prompt stop when the broker has gone.

Faust (faust-streaming 0.15) builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and leaves
``fetch_min_bytes`` at aiokafka's 1: the broker answers a fetch as soon as one record is there. At a
moderate, steady load (hundreds to a few thousand events per second) every fetch then brings back a
handful of records, and the consumer thread and the event loop pay a fetch's fixed cost (request, response
parsing, the hand-over to the stream queues) for each handful. With ``fetch_min_bytes`` above what arrives
in a few milliseconds and a short ``fetch_max_wait_ms``, the broker holds each fetch until that many bytes
are there or the wait is over: fewer, larger fetches, at most the wait added to an event's latency. At full
load the minimum is reached at once and nothing changes.

Measured (2026-11-28, quiet machine, `difflsrec bench stream --loads 1000,2000 --modes worker` on one warm
local broker, settings alternated between invocations; stream/README.md): worker CPU per event at 1,000
events/s 596 / 620 / 636 us with Faust's values, 444 / 396 us with 64 KiB and 5 ms (372-399 with 10 ms); at
2,000 events/s 394 against 293 / 263 us; p99 latency 44-52 ms against 42-47 ms at 1,000/s. The
pass-through's CPU per event at 1,000/s halves (377-383 -> 192-208 us with 10 ms): the saving is the
framework's fetch path, not the model's.

The values reach aiokafka between Faust creating its consumer and starting it (the consumer hands them to
its fetcher in ``start()``); :func:`use_worker_consumer` installs this transport on an app.

**When the broker has gone**, a graceful stop (SIGTERM) hung. Two causes, both measured with a worker whose
private broker was stopped under it (tests/stream/test_worker.py):

1. An offset commit never ends. aiokafka's ``commit`` retries for as long as the group coordinator is
   unknown, with no deadline; Faust's stop waits for the commit in flight (``wait_empty``) and then commits
   again. A worker that had served events shortly before its broker went away did not stop at all (killed
   after 90 s; 4 of 7 runs, the others had finished their last commit before the broker went). Here each
   commit gets ``commit_timeout`` seconds: past it, the commit is given up with an error in the log and
   Faust carries on as after any failed commit. Nothing is lost: the offsets stay where they were, so the
   events come again after a restart, and the user state recognises them as already applied. (Faust
   records the offsets as committed all the same, so while the worker runs on, a partition's offset moves
   again only with its next event; a restart before that redelivers more, never less.)

2. ``Fetcher.close()`` in aiokafka 0.14
   cancels its pending fetch tasks and awaits them without catching their cancellation; a fetch that had
   failed is then asleep in its retry back-off, and the ``CancelledError`` escapes ``AIOKafkaConsumer.stop()``.
   The consumer thread (mode's ``ServiceThread``) never tells the main loop it has shut down, and the main
   loop waits out mode's ``shutdown_timeout`` of 60 s: an idle worker took 62 s to exit (4 of 4 runs), past
   the 10-30 s a supervisor usually grants before SIGKILL. Here the stop logs the cancellation, closes the
   connections and goes on: 2.3-2.5 s (4 runs).
"""

from __future__ import annotations

import asyncio
import logging

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    transport: WorkerTransport

    def _create_worker_consumer(self, transport: WorkerTransport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps its constructor's arguments here and builds its Fetcher from them in start()
        consumer._fetch_min_bytes = transport.fetch_min_bytes
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer

    async def _commit(self, offsets) -> bool:
        """Faust's commit, given up after the transport's ``commit_timeout`` (cause 1 above); runs in this
        thread. False, as for any failed commit: Faust commits again at its next interval."""
        timeout = self.transport.commit_timeout
        try:
            return await asyncio.wait_for(super()._commit(offsets), timeout)
        except TimeoutError:
            log.error(
                "offset commit gave up after %.0f s (is the broker reachable?); the offsets stay where they were, "
                "and events after them will be delivered again after a restart", timeout,
            )
            return False

    async def on_thread_stop(self) -> None:
        """Stop the consumer; a cancellation escaping aiokafka's own clean-up (cause 2 above) is logged and
        the stop goes on, so the thread reports its shutdown at once instead of after mode's 60 s timeout."""
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # this thread's own task is being cancelled: let it be
                raise
            log.warning("the Kafka consumer did not close cleanly (a fetch retry was cancelled: is the broker gone?)")
            await self._close_client()

    async def _close_client(self) -> None:
        """Close the connections the interrupted ``AIOKafkaConsumer.stop()`` did not reach."""
        client = getattr(self._consumer, "_client", None)
        if client is not None:
            try:
                await client.close()
            except Exception as exc:  # noqa: BLE001 - the process is stopping; say why, don't mask the stop
                log.warning("closing the Kafka consumer's connections failed: %r", exc)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class WorkerTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose worker consumer fetches with the given minimum size and wait and
    gives a commit up after ``commit_timeout`` seconds."""

    Consumer = _Consumer

    def __init__(self, url, app, *, fetch_min_bytes: int, fetch_max_wait_ms: int, commit_timeout: float, **kwargs) -> None:
        super().__init__(url, app, **kwargs)
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.commit_timeout = commit_timeout


def use_worker_consumer(app: faust.App, fetch_min_bytes: int, fetch_max_wait: float, commit_timeout: float) -> None:
    """Make ``app`` consume through :class:`WorkerTransport`; call it before the app's first topic, agent or
    table (they resolve the transport once)."""
    if app._transport is not None:
        raise RuntimeError("the app's transport is already in use: set the consumer up right after creating the app")
    app.transport = WorkerTransport(
        app.conf.broker_consumer, app, fetch_min_bytes=fetch_min_bytes, fetch_max_wait_ms=round(fetch_max_wait * 1000),
        commit_timeout=commit_timeout,
    )
