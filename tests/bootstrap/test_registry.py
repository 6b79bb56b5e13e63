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
