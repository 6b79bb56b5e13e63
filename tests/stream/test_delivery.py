"""The pre-commit flush drains Faust's producer buffer even when the broker is slow to take a message."""

from __future__ import annotations

import asyncio
import uuid

import faust
import pytest

from stream.delivery import drain_before_commit
from stream.producer import TopicReader

N_MESSAGES = 40
SLOW_FIRST_SEND_S = 0.5  # longer than the 0.1 s after which Faust's own flush gives up


def _app_with_slow_topic(bootstrap: str, topic_name: str, drained: bool):
    app = faust.App(f"test-delivery-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}", autodiscover=False, web_enabled=False)
    if drained:
        drain_before_commit(app)
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    publish = topic.publish_message
    first = True

    async def slow_publish(fut, wait=False):
        # a broker round trip that takes a while (metadata refresh, a leader moving, a loaded machine)
        nonlocal first
        if first:
            first = False
            await asyncio.sleep(SLOW_FIRST_SEND_S)
        return await publish(fut, wait=wait)

    topic.publish_message = slow_publish
    return app, topic


async def _enqueue_and_flush(bootstrap: str, topic_name: str, drained: bool) -> int:
    """Enqueue messages as the worker does, flush as Faust does before committing; returns how many
    were still waiting in the buffer when the flush returned. (The app is made inside the running loop:
    Faust's services bind to the loop current when they are created.)"""
    app, topic = _app_with_slow_topic(bootstrap, topic_name, drained)
    await app.producer.start()
    try:
        for i in range(N_MESSAGES):
            topic.send_soon(key=b"k", value=str(i).encode())
        await app.producer.flush()  # what the consumer awaits before committing offsets
        return app.producer.buffer.size
    finally:
        await asyncio.sleep(SLOW_FIRST_SEND_S)  # let the sender finish before stopping
        await app.producer.stop()


@pytest.mark.kafka
def test_flush_returns_only_when_every_enqueued_message_is_on_the_broker(kafka_bootstrap, kafka_topic):
    name = kafka_topic()
    assert asyncio.run(_enqueue_and_flush(kafka_bootstrap, name, drained=True)) == 0
    with TopicReader(kafka_bootstrap, name) as reader:
        values = [int(r.value) for r in reader.records(timeout=3.0)]
    assert values == list(range(N_MESSAGES))


@pytest.mark.kafka
def test_faust_flush_alone_still_gives_up_early(kafka_bootstrap, kafka_topic):
    """The reason for stream/delivery.py: if this starts failing, Faust drains on its own and the
    workaround can go."""
    assert asyncio.run(_enqueue_and_flush(kafka_bootstrap, kafka_topic(), drained=False)) > 0
