"""The users table's RocksDB store (stream/table_store.py): the worker's app uses it, and RocksDB's
write-ahead log is off unless STORE_WAL says otherwise: a write that was never flushed is gone after a crash
(the changelog restores it: tests/stream/test_worker.py kills workers mid-stream), a clean close keeps it, and so
does Faust's own way of stopping a store (dropping the database object: RocksDB flushes what the log did not hold
when it is closed or dropped)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from rocksdict import Options, Rdict

from stream.app import StreamWorker
from stream.engine import ModelBundle
from stream.settings import WorkerSettings
from stream.table_store import Store

# builds the worker's app (no broker needed), puts one value into partition 0's database through the users
# table's store, then either dies without closing it (as SIGKILL leaves it) or closes it; prints the path
WRITER = textwrap.dedent(
    """
    import os, sys
    from stream.app import StreamWorker
    from stream.engine import ModelBundle
    from stream.settings import WorkerSettings

    artifact, datadir, wal, ending = sys.argv[1:]
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=datadir, artifact=artifact, store_wal=wal == "true")
    store = StreamWorker(settings, ModelBundle.load(artifact), partitions=2).users.data
    db = store._db_for_partition(0)
    db.put(b"user", b"state")
    print(store.partition_path(0), flush=True)
    if ending == "crash":
        os._exit(0)
    if ending == "drop":  # as Faust's store stops and revokes partitions: it forgets the database, never closes it
        del db
        store._dbs.clear()
        os._exit(0)
    db.close()
    """
)


def _written(tiny_artifact_dir, datadir, wal: bool, ending: str) -> bytes | None:
    run = subprocess.run([sys.executable, "-c", WRITER, str(tiny_artifact_dir), str(datadir), str(wal).lower(), ending], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    db = Rdict(run.stdout.strip().splitlines()[-1], options=Options(raw_mode=True))
    try:
        return db.get(b"user")
    finally:
        db.close()


def test_the_worker_uses_the_store(tiny_artifact_dir, tmp_path):
    settings = WorkerSettings(bootstrap_servers="127.0.0.1:1", worker_data_dir=tmp_path, artifact=tiny_artifact_dir)
    users = StreamWorker(settings, ModelBundle.load(tiny_artifact_dir), partitions=2).users
    assert type(users.data) is Store and users.data.use_rocksdict and users.data.wal is False


@pytest.mark.parametrize(("wal", "ending", "kept"), [(False, "crash", False), (True, "crash", True), (False, "close", True), (False, "drop", True)])
def test_what_survives_the_process(tiny_artifact_dir, tmp_path, wal, ending, kept):
    assert (_written(tiny_artifact_dir, tmp_path, wal, ending) == b"state") is kept
