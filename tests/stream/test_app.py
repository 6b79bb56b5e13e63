"""The worker's Faust app, built but not started: what it is wired to. (Failure isolation and dead letters
are tested on a running worker: tests/stream/test_worker.py.)"""

from __future__ import annotations

import pytest

from stream.app import StreamWorker
from stream.engine import ModelBundle
from stream.settings import WorkerSettings


@pytest.fixture
def worker(tiny_artifact_dir, tmp_path):
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path, artifact=tiny_artifact_dir)
    return StreamWorker(settings, ModelBundle.load(tiny_artifact_dir), partitions=2)


def test_the_worker_and_the_pass_through_recover_with_the_seek_before_any_stream_record(worker, tmp_path):
    """stream/recovery.py closes a Faust race that skips events after a changelog restore; it only works if
    the app really uses it (the restart tests in test_worker.py catch the race itself, but only sometimes)."""
    from stream.passthrough import create_passthrough_app
    from stream.recovery import StreamsAfterClearRecovery

    assert type(worker.app.tables.recovery) is StreamsAfterClearRecovery
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path / "pt")
    assert type(create_passthrough_app(settings, 2).tables.recovery) is StreamsAfterClearRecovery
