"""Client helpers (kafka-python): publish interaction events, read recommendations and dead letters back.

    with EventProducer("127.0.0.1:9092") as producer:
        producer.send({"user_id": "u1", "item_id": "i9", "timestamp": 1700000000, "event_id": "e1"})
    with TopicReader("127.0.0.1:9092", "recommendations") as reader:
        for rec in reader.recommendations(timeout=5):
            print(rec.user_id, [item.item_id for item in rec.items])
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from stream.schemas import DeadLetter, InteractionEvent, Recommendation
from stream.settings import kafka_python_config

log = logging.getLogger(__name__)


class EventProducer:
    """Publishes interaction events keyed by user id (the worker's partitioning contract)."""

    def __init__(self, bootstrap_servers: str, topic: str = "interactions", **config: Any):
        self.topic = topic
        config = {"acks": "all", "linger_ms": 5, **config}
        self._producer = KafkaProducer(**kafka_python_config(bootstrap_servers=bootstrap_servers, **config))

    def send(self, event: InteractionEvent | dict):
        """Validate and publish one event; returns kafka-python's future."""
        if not isinstance(event, InteractionEvent):
            event = InteractionEvent.model_validate(event)
        return self._producer.send(self.topic, key=event.user_id.encode(), value=self.encode(event))

    @staticmethod
    def encode(event: InteractionEvent) -> bytes:
        """The message value :meth:`send` publishes: the event's normal form (timestamp in epoch seconds, the
        fields the worker reads, extra ones dropped), compact JSON in UTF-8 (not \\u-escaped: an id of 256
        CJK characters is 768 bytes, not 1,536)."""
        return json.dumps(event.model_dump(exclude_none=True), separators=(",", ":"), ensure_ascii=False).encode()

    def send_raw(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None):
        """Publish bytes as they are (for malformed-event tests and replays of foreign data)."""
        return self._producer.send(self.topic, key=key, value=value, headers=headers)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send what is buffered and close; ``timeout`` bounds the wait (records still unsent then are
        dropped), else it can last kafka-python's delivery timeout (120 s) while the broker is away."""
        try:
            self._producer.close(timeout)
        except KafkaTimeoutError:  # kafka-python's close flushes first and raises when that times out
            log.warning("closing the producer: records not sent within %gs were dropped (is the broker at %s reachable?)", timeout, self._producer.config["bootstrap_servers"])

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()
        self.close()


class TopicReader:
    """Reads a topic from the beginning or from now on (no consumer group; every partition, or only
    ``partitions``), with receive times."""

    def __init__(self, bootstrap_servers: str, topic: str, from_beginning: bool = True, partitions: Iterable[int] | None = None, **config: Any):
        self.topic = topic
        config = kafka_python_config(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
                                     auto_offset_reset="earliest" if from_beginning else "latest", **config)
        if partitions is None:
            self._consumer = KafkaConsumer(topic, **config)
        else:
            self._consumer = KafkaConsumer(**config)
            self._consumer.assign([TopicPartition(topic, p) for p in partitions])

    def wait_for_assignment(self, timeout: float = 30.0) -> None:
        """Block until the consumer is assigned its partitions and positioned, so that nothing published
        after this call can be missed (with ``from_beginning=False``: nothing published before is read)."""
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions of {self.topic} assigned after {timeout}s")
            self._consumer.poll(timeout_ms=100)
        for tp in self._consumer.assignment():
            self._consumer.position(tp)  # resolves the offset reset now, not at the first record

    def poll(self, timeout: float = 0.5) -> list[tuple[Any, float]]:
        """Records that arrived within ``timeout`` seconds, each with its local receive time."""
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        received = time.time()
        return [(record, received) for records in batches.values() for record in records]

    def records(self, timeout: float) -> Iterator[Any]:
        """Every record that arrives until ``timeout`` seconds pass without one."""
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < timeout:
            polled = self.poll(min(0.5, timeout))
            if polled:
                idle_since = time.monotonic()
            for record, _ in polled:
                yield record

    def recommendations(self, timeout: float) -> Iterator[Recommendation]:
        for record in self.records(timeout):
            yield Recommendation.model_validate_json(record.value)

    def dead_letters(self, timeout: float) -> Iterator[DeadLetter]:
        for record in self.records(timeout):
            yield DeadLetter.from_message(record.value, record.headers, record.key)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
