"""The benchmarks' load generator and output reader: aiokafka clients on one event loop in a thread.

They share the 2-core machine with the broker and the measured worker, so they must cost little. The
user-facing clients in ``stream/producer.py`` (kafka-python, pure Python) took ~0.55 ms of CPU per event to
pace 1,000 events/s out and read their 1,000 answers back: as much as the worker itself, measured by
``difflsrec bench stream`` ("load generator + reader"). aiokafka builds and parses record batches in C.

    with HarnessLoop() as loop, OutputCollector(bootstrap, "recommendations", loop) as reader, \
            PacedProducer(bootstrap, "interactions", loop) as producer:
        started = producer.pace(events, range(0, 5000), rate=1000, sent_at=sent_at)
        reader.wait_for(range(0, 5000), timeout=60)
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

# the three fields the reader needs, found in the message bytes without parsing the JSON (thousands a second)
EVENT_NUMBER = re.compile(rb'"event_id":"b([^"]*)"')
EMIT_TIME = re.compile(rb'"emit_time":([^,}]*)')
MODEL_VERSION = re.compile(rb'"model_version":"([^"]*)"')


def _field(pattern: re.Pattern, value: bytes) -> bytes | None:
    match = pattern.search(value)
    return None if match is None else match.group(1)


def event_number(value: bytes) -> int | None:
    """``n`` of the ``"event_id":"b<n>"`` in an input event or a recommendation (both carry it)."""
    field = _field(EVENT_NUMBER, value)
    return None if field is None else int(field)


def emit_time(value: bytes) -> float | None:
    """The worker's ``emit_time`` of a recommendation (None for the pass-through's forwarded bytes)."""
    field = _field(EMIT_TIME, value)
    return None if field is None else float(field)


def model_version(value: bytes) -> str | None:
    field = _field(MODEL_VERSION, value)
    return None if field is None else field.decode()


class HarnessLoop:
    """An asyncio event loop running in a daemon thread; the harness's clients live on it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="harness-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine, timeout: float | None = None):
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    def __enter__(self) -> HarnessLoop:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PacedProducer:
    """Sends prepared (key, value) events at a given rate; each event's send time goes into ``sent_at``."""

    def __init__(self, bootstrap: str, topic: str, loop: HarnessLoop, linger_ms: int = 1, acks: int | str = 1):
        self.topic, self._loop = topic, loop

        async def start() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=acks, enable_idempotence=False)
            await producer.start()
            return producer

        self._producer = loop.run(start(), timeout=60)

    def pace(self, events: Sequence[tuple[bytes, bytes]], phase: range, rate: float, sent_at: dict[int, float]) -> float:
        """Send ``events[phase]``, event n due at start + (n - phase.start) / rate; returns the start time.
        Events that fall due together (the loop woke late) go out together, each stamped when sent."""
        return self._loop.run(self._pace(events, phase, rate, sent_at))

    async def _pace(self, events, phase: range, rate: float, sent_at: dict[int, float]) -> float:
        started = time.time()
        n = phase.start
        while n < phase.stop:
            due = min(phase.stop, phase.start + int((time.time() - started) * rate) + 1)
            while n < due:
                key, value = events[n]
                sent_at[n] = time.time()
                await self._producer.send(self.topic, value, key=key)  # returns once the record is buffered
                n += 1
            wait = started + (n - phase.start) / rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        await self._producer.flush()
        return started

    def close(self) -> None:
        self._loop.run(self._producer.stop(), timeout=60)

    def __enter__(self) -> PacedProducer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class OutputCollector:
    """Reads a topic from the beginning in the background: for each event number's first output, the
    receive time (when the poll returned it), its Kafka record timestamp (the worker's producer call), the
    worker's ``emit_time`` and, with ``versions``, the model version that served it."""

    def __init__(self, bootstrap: str, topic: str, loop: HarnessLoop, versions: bool = False):
        self.received: dict[int, float] = {}
        self.produced: dict[int, float] = {}
        self.emitted: dict[int, float] = {}
        self.versions: dict[int, str] | None = {} if versions else None
        self._loop = loop
        self._stopping = False

        async def start() -> AIOKafkaConsumer:
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest")
            await consumer.start()
            return consumer

        self._consumer = loop.run(start(), timeout=60)
        self._task = asyncio.run_coroutine_threadsafe(self._collect(), loop.loop)

    async def _collect(self) -> None:
        while not self._stopping:
            batches = await self._consumer.getmany(timeout_ms=200)
            received_at = time.time()
            for records in batches.values():
                for record in records:
                    n = event_number(record.value)
                    if n is None or n in self.received:
                        continue
                    self.received[n] = received_at
                    self.produced[n] = record.timestamp / 1000.0
                    emitted = emit_time(record.value)
                    if emitted is not None:
                        self.emitted[n] = emitted
                    if self.versions is not None:
                        self.versions[n] = model_version(record.value)

    def wait_for(self, numbers: range, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(n in self.received for n in numbers):
                return True
            time.sleep(0.2)
        return False

    def close(self) -> None:
        self._stopping = True
        try:
            self._task.result(10)
        finally:
            self._loop.run(self._consumer.stop(), timeout=60)

    def __enter__(self) -> OutputCollector:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
