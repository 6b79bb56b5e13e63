"""The worker's Kafka consumer: fetch settings Faust does not expose reach the aiokafka consumer it builds,
and the commit bound reaches its consumer thread (the stop without a broker: tests/stream/test_worker.py)."""

from __future__ import annotations

import asyncio

import faust
import pytest

from stream.consumer import WorkerTransport, use_worker_consumer
from stream.passthrough import create_passthrough_app
from stream.settings import WorkerSettings


def _built_consumer(app: faust.App):
    """The aiokafka consumer Faust's consumer thread creates for ``app`` (constructed, never started: no
    broker is contacted), and its fetch settings."""

    async def build():
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_min_bytes, consumer._fetch_max_wait_ms, consumer._max_partition_fetch_bytes
        finally:
            await consumer.stop()

    return asyncio.run(build())


def test_fetch_settings_reach_the_aiokafka_consumer(isolated_home, tmp_path):
    settings = WorkerSettings(fetch_min_bytes=65536, fetch_max_wait=0.01, commit_timeout=4.5, worker_data_dir=tmp_path / "w")
    app = create_passthrough_app(settings, partitions=2)
    assert isinstance(app.transport, WorkerTransport)
    assert app.consumer._thread.transport.commit_timeout == 4.5
    min_bytes, max_wait_ms, partition_bytes = _built_consumer(app)
    assert (min_bytes, max_wait_ms) == (65536, 10)
    assert partition_bytes == app.conf.consumer_max_fetch_size  # Faust's own arguments are kept


def test_the_defaults_replace_faust_fetch_settings(isolated_home, tmp_path):
    """By default the worker fetches with 64 KiB / 5 ms where Faust alone would use 1 byte / 1.5 s."""
    defaults = WorkerSettings(worker_data_dir=tmp_path / "w")
    plain = faust.App("plain-faust", broker="kafka://127.0.0.1:9092", autodiscover=False)
    assert _built_consumer(create_passthrough_app(defaults, partitions=2))[:2] == (65536, 5)
    assert _built_consumer(plain)[:2] == (1, 1500)


def test_fetch_settings_must_come_before_the_transport_is_used():
    app = faust.App("late", broker="kafka://127.0.0.1:9092", autodiscover=False)
    app.consumer  # built from the transport, which is then fixed
    with pytest.raises(RuntimeError, match="already in use"):
        use_worker_consumer(app, 1024, 0.01, 10.0)


@pytest.mark.parametrize("field, value", [("fetch_min_bytes", 0), ("fetch_max_wait", 0.0), ("commit_timeout", 0.0)])
def test_fetch_settings_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        WorkerSettings(**{field: value})
