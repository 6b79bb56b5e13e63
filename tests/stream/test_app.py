"""The worker's batch handling without a broker: failure isolation and dead letters.

The Faust app is real but not started: what the worker produces lands in Faust's producer buffer, where
the test reads it. The table I/O is replaced (it needs a running app): reading fails for one user, as a
bug or a corrupt value would, and writing records what was served. The engine runs for real.
"""

from __future__ import annotations

import asyncio
import json

import faust
import pytest
from faust.types.tuples import Message

from stream.app import StreamWorker
from stream.engine import ModelBundle
from stream.schemas import DeadLetter, Reason
from stream.settings import WorkerSettings


class FailingWorker(StreamWorker):
    """Serving fails whenever the poisoned user is in the batch."""

    poisoned = "bad-user"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served: list[str] = []

    def _read_states(self, valid, owners):
        if any(s.event.user_id == self.poisoned for s in valid):
            raise RuntimeError("poisoned")
        return {s.event.user_id: None for s in valid}, {s.event.user_id: e for s, e in zip(valid, owners)}

    def _publish_and_write(self, result, event_of_user):
        self.served += [rec["event_id"] for rec in result.recommendations]


@pytest.fixture
def worker(tiny_artifact_dir, tmp_path):
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path, artifact=tiny_artifact_dir)
    return FailingWorker(settings, ModelBundle.load(tiny_artifact_dir), partitions=2)


def _event(app, offset: int, user: str, raw: bytes | None = None) -> faust.Event:
    value = raw if raw is not None else json.dumps({"user_id": user, "item_id": "i3", "timestamp": 1_000_000_000 + offset, "event_id": f"e{offset}"}).encode()
    message = Message("interactions", 1, offset, 1_700_000_000.0, 0, [], user.encode(), value, None)
    return faust.Event(app, user.encode(), value, [], message)


def _produced(app) -> list:
    queue = app.producer.buffer.pending
    return [queue.get_nowait().message for _ in range(queue.qsize())]


def test_a_failing_event_goes_to_the_dlq_while_the_rest_of_its_batch_is_served(worker):
    app = worker.app
    events = [_event(app, 0, "u1"), _event(app, 1, "bad-user"), _event(app, 2, "u2"), _event(app, 3, "u1", raw=b"{oops")]
    asyncio.run(worker.handle_batch(events))
    assert worker.served == ["e0", "e2"]  # the whole batch failed, then every good event was served alone
    letters = [DeadLetter.from_message(m.value, m.headers) for m in _produced(app) if m.channel.get_topic_name() == "interactions.dlq"]
    assert sorted((d.reason, d.offset) for d in letters) == [(Reason.NOT_JSON, 3), (Reason.PROCESSING_ERROR, 1)]
    poisoned = next(d for d in letters if d.reason is Reason.PROCESSING_ERROR)
    assert "RuntimeError: poisoned" in poisoned.detail and poisoned.raw == events[1].message.value
    totals = worker.metrics.totals()
    assert totals["difflsrec_dead_letters"] == 2 and totals["difflsrec_events_in"] == 4


def test_the_worker_and_the_pass_through_recover_with_the_seek_before_any_stream_record(worker, tmp_path):
    """stream/recovery.py closes a Faust race that skips events after a changelog restore; it only works if
    the app really uses it (the restart tests in test_worker.py catch the race itself, but only sometimes)."""
    from stream.passthrough import create_passthrough_app
    from stream.recovery import StreamsAfterClearRecovery

    assert type(worker.app.tables.recovery) is StreamsAfterClearRecovery
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path / "pt")
    assert type(create_passthrough_app(settings, 2).tables.recovery) is StreamsAfterClearRecovery
