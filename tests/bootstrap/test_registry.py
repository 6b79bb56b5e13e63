"""The registry publishes versions atomically; killed publishers leave the live version untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bootstrap.registry import Registry, RegistryError


def _writer(payload: str):
    def write(d: Path) -> None:
        (d / "weights.bin").write_text(payload)
        (d / "manifest.json").write_text(json.dumps({"payload": payload}))

    return write


def test_publish_and_latest(tmp_path):
    reg = Registry(tmp_path)
    assert reg.latest() is None and reg.versions() == []
    reg.publish("v1", _writer("one"))
    reg.publish("v2", _writer("two"))
    assert reg.versions() == ["v1", "v2"] and reg.latest() == "v2"
    assert (reg.latest_path() / "weights.bin").read_text() == "two"
    reg.set_latest("v1")
    assert reg.latest() == "v1"
    with pytest.raises(RegistryError):
        reg.publish("v2", _writer("again"))
    with pytest.raises(RegistryError):
        reg.set_latest("v9")


def test_failed_writer_leaves_nothing(tmp_path):
    reg = Registry(tmp_path)
    reg.publish("v1", _writer("one"))

    def broken(d: Path) -> None:
        (d / "weights.bin").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        reg.publish("v2", broken)
    assert reg.versions() == ["v1"] and reg.latest() == "v1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging-")]
    with pytest.raises(RegistryError, match="manifest"):
        reg.publish("v3", lambda d: (d / "x").write_text("no manifest"))


def test_publisher_killed_mid_write_leaves_live_version(tmp_path):
    """A real process is SIGKILLed while writing: LATEST still names the old version, the partial one is
    invisible, and the next publisher removes the staging debris."""
    reg = Registry(tmp_path)
    reg.publish("v1", _writer("one"))
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from bootstrap.registry import Registry
        def write(d):
            (d / "weights.bin").write_text("half")
            Path({str(marker)!r}).write_text("now")
            time.sleep(60)
        Registry(Path({str(tmp_path)!r})).publish("v2", write)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.time() + 30
        while not marker.exists():
            assert time.time() < deadline and proc.poll() is None, "publisher did not start writing"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert reg.latest() == "v1" and reg.versions() == ["v1"]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".staging-")]
    reg.publish("v3", _writer("three"))
    assert reg.versions() == ["v1", "v3"] and reg.latest() == "v3"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging-")]


def test_latest_pointing_nowhere_is_an_error(tmp_path):
    (tmp_path / "LATEST").write_text("ghost\n")
    with pytest.raises(RegistryError, match="ghost"):
        Registry(tmp_path).latest()


def test_a_version_is_readable_by_other_users_as_the_umask_allows(tmp_path):
    """mkdtemp (0700) and safetensors (0600) hid every version from a worker running under another uid."""
    reg = Registry(tmp_path / "registry")
    old = os.umask(0o022)
    try:
        path = reg.publish("v1", lambda d: ((d / "manifest.json").write_text("{}"), (d / "index").mkdir(), (d / "index" / "f").write_text("x")))
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o755 and ((path / "index").stat().st_mode & 0o777) == 0o755
    assert ((path / "manifest.json").stat().st_mode & 0o777) == 0o644 and ((path / "index" / "f").stat().st_mode & 0o777) == 0o644


def test_a_registry_path_that_is_a_file_is_refused_at_once(tmp_path):
    (tmp_path / "regfile").write_text("")
    with pytest.raises(RegistryError, match="is a file, not a registry directory"):
        Registry(tmp_path / "regfile")


def test_the_registry_lock_excludes_a_second_holder(tmp_path):
    import threading

    reg = Registry(tmp_path / "registry")
    waited = []

    def second_holder():
        started = time.monotonic()
        with Registry(tmp_path / "registry").lock():
            waited.append(time.monotonic() - started)

    with reg.lock():
        other = threading.Thread(target=second_holder)
        other.start()
        time.sleep(1.0)
        assert not waited  # still waiting
    other.join(10)
    assert waited and waited[0] >= 0.9


def test_registry_list_and_set_live_roll_back_and_refuse_a_corrupt_version(tmp_path, tiny_artifact_dir):
    import shutil

    env = {**os.environ, "DIFFLSREC_HOME": str(tmp_path / "home")}
    reg = Registry(tmp_path / "home" / "registry")
    for version in ("v1", "v2", "v3"):
        reg.publish(version, lambda d: shutil.copytree(tiny_artifact_dir, d, dirs_exist_ok=True))
    weights = reg.path_of("v2") / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "difflsrec.cli", "registry", *args], capture_output=True, text=True, env=env, timeout=120)

    listed = cli("list", "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["version"] for r in rows] == ["v1", "v2", "v3"] and [r["live"] for r in rows] == [False, False, True]
    corrupt = cli("set-live", "v2")
    assert corrupt.returncode == 1 and "does not match its checksum" in corrupt.stderr and reg.latest() == "v3"
    back = cli("set-live", "v1")
    assert back.returncode == 0 and "live: v1 (was v3)" in back.stdout and reg.latest() == "v1"
    missing = cli("set-live", "v9")
    assert missing.returncode == 1 and "no published version 'v9'" in missing.stderr
    (reg.root / "LATEST").write_text("gone\n")
    with pytest.raises(RegistryError, match="published: v1, v2, v3 .*set-live VERSION"):
        reg.latest()


def test_prune_keeps_the_newest_and_the_live_version(tmp_path):
    reg = Registry(tmp_path / "registry")
    for version in ("v1", "v2", "v3", "v4", "v5"):
        reg.publish(version, lambda d: (d / "manifest.json").write_text("{}"))
    reg.set_latest("v2")  # rolled back
    assert reg.prune(2) == ["v1", "v3"]
    assert reg.versions() == ["v2", "v4", "v5"] and reg.latest() == "v2"
    assert not [p for p in reg.root.iterdir() if p.name.startswith(".staging-")]
    with pytest.raises(ValueError, match="keep at least one"):
        reg.prune(0)
    env = {**os.environ, "DIFFLSREC_HOME": str(tmp_path / "home")}
    pruned = subprocess.run([sys.executable, "-m", "difflsrec.cli", "registry", "prune", "--keep", "1", "--registry", str(reg.root)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert pruned.returncode == 0 and "removed 1 version(s): v4; 2 left" in pruned.stdout, pruned.stdout + pruned.stderr
    assert reg.versions() == ["v2", "v5"]


def test_version_names_sort_by_creation_time(monkeypatch):
    """Seconds and microseconds from one clock reading (CI once published two versions within a second whose
    suffix, nanoseconds modulo a million, sorted the later one first, and pruning removed the new version)."""
    from model import artifact
    from model.artifact import new_version

    monkeypatch.setattr(artifact.time, "time_ns", lambda: 1_700_000_000_123_456_789)
    assert new_version() == "20231114T221320-123456"
    # a clock at or before the newest published name: one microsecond after it, across a second when needed
    assert new_version(after="20231114T221320-123456") == "20231114T221320-123457"
    assert new_version(after="20231114T221321-999999") == "20231114T221322-000000"
    assert new_version(after="20231114T221319-999999") == "20231114T221320-123456"  # the clock is already later
    assert new_version(after="v2") == "20231114T221320-123456"  # a hand-written name: no time to be after
    monkeypatch.undo()
    names = [new_version()]
    for _ in range(2000):
        names.append(new_version(after=names[-1]))
    assert names == sorted(names) and len(set(names)) == len(names)
