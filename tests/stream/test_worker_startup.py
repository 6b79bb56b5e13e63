"""`difflsrec worker` refuses at once, in one line, what an operator can get wrong before it joins the group."""

from __future__ import annotations

import fcntl
import socket
import time

import pytest

from model.artifact import ArtifactError, load_artifact
from tests.processes import difflsrec


def _worker(tmp_path, artifact, *extra: str, bootstrap: str = "127.0.0.1:1"):
    env = {"DIFFLSREC_HOME": str(tmp_path / "home"), "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    started = time.monotonic()
    result = difflsrec("--threads", "1", "worker", "--artifact", str(artifact), *extra, env=env, timeout=120)
    return result, time.monotonic() - started


def test_no_broker_is_one_line_in_seconds(tmp_path, tiny_artifact_dir):
    result, seconds = _worker(tmp_path, tiny_artifact_dir, "--web-port", "39391", "--data-dir", str(tmp_path / "w"))
    assert result.returncode == 1 and "no Kafka broker answers at 127.0.0.1:1" in result.stderr
    assert seconds < 30 and len(result.stderr.splitlines()) < 10, result.stderr  # was 34 s and ~130 log lines


def test_a_web_port_in_use_is_refused_before_anything_starts(tmp_path, tiny_artifact_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result, _ = _worker(tmp_path, tiny_artifact_dir, "--web-port", str(port), "--data-dir", str(tmp_path / "w"))
    assert result.returncode == 1 and f"web port 127.0.0.1:{port} is not free" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_dir_in_use_by_another_worker_is_refused(tmp_path, tiny_artifact_dir):
    datadir = tmp_path / "w"
    datadir.mkdir()
    with open(datadir / ".worker.lock", "a+") as held:  # what a running worker holds
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 12345\n")
        held.flush()
        result, seconds = _worker(tmp_path, tiny_artifact_dir, "--web-port", "39392", "--data-dir", str(datadir))
    assert result.returncode == 1 and f"the data directory {datadir} is in use by another worker (pid 12345)" in result.stderr, result.stderr
    assert seconds < 30  # before joining the group (it used to rebalance the running worker, then crash after 35 s)
    (tmp_path / "file").write_text("")
    as_file, _ = _worker(tmp_path, tiny_artifact_dir, "--web-port", "39393", "--data-dir", str(tmp_path / "file"))
    assert as_file.returncode == 1 and "is a file" in as_file.stderr and "Traceback" not in as_file.stderr


def test_a_damaged_manifest_names_its_file(tmp_path, tiny_artifact_dir):
    import shutil

    broken = tmp_path / "art"
    shutil.copytree(tiny_artifact_dir, broken)
    (broken / "manifest.json").write_text("{bad")
    with pytest.raises(ArtifactError, match=f"{broken / 'manifest.json'} is not readable JSON"):
        load_artifact(broken)


def test_health_sees_whether_a_broker_accepts_connections():
    """`/health` said "ok" while the broker was down; it now checks that a bootstrap server answers."""
    import asyncio

    from stream.web import broker_reachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert asyncio.run(broker_reachable(f"127.0.0.1:1,127.0.0.1:{port}"))  # any one of them
    assert not asyncio.run(broker_reachable(f"127.0.0.1:{port}"))  # closed now
    assert not asyncio.run(broker_reachable("not-a-server"))


def test_a_mistyped_setting_is_named_with_the_one_meant(tmp_path, tiny_artifact_dir):
    """pydantic-settings ignores an unknown DIFFLSREC_ variable: a typo left the default in force silently."""
    env = {"DIFFLSREC_HOME": str(tmp_path / "home"), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DIFFLSREC_BACH_MAX": "5", "DIFFLSREC_NO_SUCH_THING": "1"}
    result = difflsrec("--threads", "1", "worker", "--artifact", str(tiny_artifact_dir), "--web-port", "39394", "--data-dir", str(tmp_path / "w"), env=env, timeout=120)
    assert "warning: DIFFLSREC_BACH_MAX is not a setting (did you mean DIFFLSREC_BATCH_MAX?); it is ignored" in result.stderr, result.stderr
    assert "warning: DIFFLSREC_NO_SUCH_THING is not a setting; it is ignored" in result.stderr
    assert "DIFFLSREC_HOME" not in result.stderr.split("no Kafka broker")[0]  # a real setting is not warned about
