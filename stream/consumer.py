"""The Kafka consumer Faust runs for the worker, with the two fetch settings Faust does not expose.

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
its fetcher in ``start()``); :func:`use_fetch_settings` installs this transport on an app.
"""

from __future__ import annotations

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: "FetchTunedTransport") -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps its constructor's arguments here and builds its Fetcher from them in start()
        consumer._fetch_min_bytes = transport.fetch_min_bytes
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchTunedTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose worker consumer fetches with the given minimum size and wait."""

    Consumer = _Consumer

    def __init__(self, url, app, *, fetch_min_bytes: int, fetch_max_wait_ms: int, **kwargs) -> None:
        super().__init__(url, app, **kwargs)
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms


def use_fetch_settings(app: faust.App, fetch_min_bytes: int, fetch_max_wait: float) -> None:
    """Make ``app`` consume through :class:`FetchTunedTransport`; call it before the app's first topic,
    agent or table (they resolve the transport once)."""
    if app._transport is not None:
        raise RuntimeError("the app's transport is already in use: set the fetch settings right after creating the app")
    app.transport = FetchTunedTransport(
        app.conf.broker_consumer, app, fetch_min_bytes=fetch_min_bytes, fetch_max_wait_ms=round(fetch_max_wait * 1000)
    )
