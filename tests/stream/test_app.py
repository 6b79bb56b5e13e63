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


def test_other_workers_reach_this_one_at_an_address_they_can_use():
    """With the wildcard bind address (compose's DIFFLSREC_WEB_HOST=0.0.0.0) the URL other workers forwarded
    per-user requests to was http://0.0.0.0:6066: each of them reached itself."""
    import socket

    from stream.app import _app_options
    from stream.settings import WorkerSettings

    def url(**settings) -> str:
        return _app_options(WorkerSettings(**settings), 1)["canonical_url"]

    assert url() == "http://127.0.0.1:6066"
    assert url(web_host="0.0.0.0", web_port=7000) == f"http://{socket.gethostname()}:7000"
    assert url(web_host="0.0.0.0", web_advertised_host="worker-1.internal") == "http://worker-1.internal:6066"
    assert _app_options(WorkerSettings(web_host="0.0.0.0"), 1)["web_bind"] == "0.0.0.0"  # still listens on every interface


def test_settle_heap_freezes_the_heap_and_sets_the_thresholds():
    """The worker and the pass-through both start this way (run_faust_worker); with Python's own thresholds
    collections cost ~40 us per event with many users per batch (stream/README.md)."""
    import gc

    from stream.app import settle_heap

    before = gc.get_threshold()
    try:
        garbage = [[]]
        garbage[0].append(garbage)  # a cycle: only the collector frees it
        del garbage
        settle_heap((50_000, 20, 100))
        assert gc.get_threshold() == (50_000, 20, 100)
        assert gc.get_freeze_count() > 0  # what was alive is out of the collector's way
        assert gc.get_count()[0] < 100  # the collection ran first
        settle_heap(None)  # None keeps the thresholds as they are
        assert gc.get_threshold() == (50_000, 20, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_gc_threshold_setting(monkeypatch):
    assert WorkerSettings().gc_threshold == (50_000, 20, 100)
    monkeypatch.setenv("DIFFLSREC_GC_THRESHOLD", "[700, 10, 10]")  # Python's own
    assert WorkerSettings().gc_threshold == (700, 10, 10)
    monkeypatch.setenv("DIFFLSREC_GC_THRESHOLD", "[700, 10]")
    with pytest.raises(ValueError):
        WorkerSettings()


def test_the_stateful_pass_through_writes_a_table_on_the_workers_store(tmp_path):
    """PASSTHROUGH_TABLE=1 (the benchmark's Faust-with-a-table ceiling) uses the worker's store."""
    from stream.passthrough import create_passthrough_app
    from stream.table_store import Store

    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path)
    assert not create_passthrough_app(settings, 2).tables
    tables = create_passthrough_app(WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path / "t"), 2, with_table=True).tables
    assert [type(t.data) for t in tables.values()] == [Store]
