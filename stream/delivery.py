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
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

log = logging.getLogger(__name__)


def drain_before_commit(app: faust.App, poll_interval: float = 0.001, warn_after: float = 10.0) -> None:
    """Install the draining flush on ``app``'s producer buffer; call before the app starts."""
    buffer = app.producer.buffer
    original_flush = buffer.flush
    send_pending = buffer._send_pending
    in_flight = 0

    async def send_counted(fut) -> None:
        # the sender calls this right after taking ``fut`` off the queue, with no await in between, so a
        # message is always counted either in the queue (``buffer.size``) or here
        nonlocal in_flight
        in_flight += 1
        try:
            await send_pending(fut)
        finally:
            in_flight -= 1

    async def flush() -> None:
        started = warned = time.monotonic()
        while buffer.size or in_flight:
            if buffer.should_stop or buffer.state != "running":
                return await original_flush()
            await asyncio.sleep(poll_interval)
            now = time.monotonic()
            if now - warned > warn_after:
                warned = now
                log.warning("producer flush: %d messages still pending after %.0f s", buffer.size + in_flight, now - started)

    # instance attributes: the sender task looks ``_send_pending`` up when it starts, ``flush`` is
    # looked up on each call (the consumer's commit, the buffer's own stop)
    buffer._send_pending = send_counted
    buffer.flush = flush
