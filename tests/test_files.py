"""difflsrec.files: write_atomic (whole content or the old one, no temporary file left) and pid_lock."""

from __future__ import annotations

from unittest import mock

import pytest

from difflsrec.files import write_atomic


def test_write_atomic_replaces_the_whole_file(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(path, "old")
    write_atomic(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_leaves_the_old_content(tmp_path):
    path = tmp_path / "report.md"
    write_atomic(path, "old")
    with mock.patch("difflsrec.files.os.replace", side_effect=OSError("disk full")), pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old"


def test_pid_lock_names_its_holder_waits_for_it_and_is_freed_by_the_holders_death(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from difflsrec.files import LockBusy, pid_lock

    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"from difflsrec.files import pid_lock\nimport time\nwith pid_lock({str(path)!r}):\n    print('held', flush=True)\n    time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(LockBusy) as busy:
            with pid_lock(path, wait=0.5):
                pass
        assert busy.value.owner == f"pid {holder.pid}" and 0.5 <= time.monotonic() - started < 5
    finally:
        holder.kill()  # a dead holder's lock is released by the kernel: no stale lock
        holder.wait()
    with pid_lock(path, wait=5):
        assert path.read_text() == f"pid {os.getpid()}\n"
