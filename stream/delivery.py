"""Make Faust's pre-commit flush wait until everything enqueued with ``send_soon`` is with the Kafka client.

At-least-once rests on one ordering: an event's offset is committed only after its output (the
recommendation and the table's changelog write) is on the broker. Faust commits like that (flush the
producer, then commit), but its ``ProducerBuffer.flush`` gives up as soon as no message leaves the
buffer for 0.1 s (faust-streaming 0.15: ``flush_atmost`` returns on the first ``wait_for`` timeout).
On a loaded machine that happens: the offsets are committed while messages still wait in the buffer,
and a crash then loses them for good, since the events are not redelivered
(``tests/stream/test_delivery.py`` shows Faust's flush returning with messages still pending).

:func:`drain_before_commit` replaces the buffer's ``flush`` with one that returns only when the buffer
is empty *and* no message is half-way into the client (the buffer's sender takes a message off the
queue before handing it over); aiokafka's own ``flush``, which Faust calls next, then waits for the
broker's acknowledgements. While the producer is stopping, the sender no longer runs, so the original
behaviour applies.

Finished is not written: Faust only logs a message the broker refused (``Topic._on_published``: a warning, the
future's exception) or one the client would not take (the buffer's sender dies with it), and commits past it
(an expired batch for a partition whose leader is gone, a topic whose ``max.message.bytes`` a message exceeds, a
missing ACL). So every message handed to the client is followed until it is answered, and the producer's
``flush``, which the commit awaits, raises :class:`DeliveryFailed` once any was not written: no offset is
committed from then on, the worker stops, and the events come again to its successor.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

log = logging.getLogger(__name__)


class DeliveryFailed(RuntimeError):
    """A message handed to the Kafka client was not written: the offsets of its events must not be committed."""


def _describe(fut) -> str:
    try:
        return fut.message.channel.get_topic_name()
    except Exception:  # a message without a named channel: still a failure to report
        return "?"


def drain_before_commit(app: faust.App, poll_interval: float = 0.001, warn_after: float = 10.0, settle_timeout: float = 30.0) -> None:
    """Install the draining flush on ``app``'s producer buffer, and the check that every message handed to the
    client was written on its producer's flush; call before the app starts."""
    buffer = app.producer.buffer
    original_flush = buffer.flush
    send_pending = buffer._send_pending
    in_flight = 0
    handed: set = set()  # messages with the client, not answered yet
    owed: list = []  # those handed over when the buffer last drained: the client's flush answers them
    failures: list[str] = []

    def answered(fut) -> None:
        if fut in handed:  # once per message (the flush below may get here before this callback)
            handed.discard(fut)
            if not fut.cancelled() and fut.exception() is not None:
                failures.append(f"{_describe(fut)}: {fut.exception()!r}")

    async def send_counted(fut) -> None:
        # the sender calls this right after taking ``fut`` off the queue, with no await in between, so a
        # message is always counted either in the queue (``buffer.size``) or here
        nonlocal in_flight
        in_flight += 1
        try:
            await send_pending(fut)
        except Exception as error:  # the client would not take it (the buffer's sender stops with this)
            failures.append(f"{_describe(fut)}: {error!r}")
            raise
        else:
            handed.add(fut)
            fut.add_done_callback(answered)
        finally:
            in_flight -= 1

    async def flush() -> None:
        started = warned = time.monotonic()
        while buffer.size or in_flight:
            if buffer.should_stop or buffer.state != "running":
                owed[:] = handed
                return await original_flush()
            await asyncio.sleep(poll_interval)
            now = time.monotonic()
            if now - warned > warn_after:
                warned = now
                log.warning("producer flush: %d messages still pending after %.0f s", buffer.size + in_flight, now - started)
        # everything enqueued before the commit's offsets were taken is with the client now; messages the agent
        # sends while the commit goes on are later events' and are not waited for here
        owed[:] = handed

    producer = app.producer
    producer_flush = producer.flush

    async def flush_written() -> None:
        owed.clear()
        await producer_flush()  # the buffer drained (above), then the client's flush: its batches answered
        waiting, deadline = [f for f in owed if not f.done()], time.monotonic() + settle_timeout
        while waiting and time.monotonic() < deadline:  # answered; their futures are resolved by callbacks
            await asyncio.sleep(poll_interval)
            waiting = [f for f in waiting if not f.done()]
        for fut in owed:
            if fut.done():
                answered(fut)
        if waiting:
            failures.append(f"{len(waiting)} message(s) not answered {settle_timeout:.0f} s after the client's flush")
        if failures:
            log.error("%d message(s) were not written (first: %s); no offset is committed from now on", len(failures), failures[0])
            raise DeliveryFailed(f"{len(failures)} message(s) were not written (first: {failures[0]}); the offsets of their events are not committed")

    # instance attributes: the sender task looks ``_send_pending`` up when it starts, ``flush`` is
    # looked up on each call (the consumer's commit, the buffer's own stop)
    buffer._send_pending = send_counted
    buffer.flush = flush
    producer.flush = flush_written
