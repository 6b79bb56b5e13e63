"""Running the ``difflsrec`` console script as a user does, and killing a real process at a chosen moment, for
the tests that prove a command survives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable


def difflsrec(*args: str, env: dict | None = None, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``difflsrec ARGS`` in a subprocess (text output captured, exit code not checked). COLUMNS: typer's boxed
    usage errors wrap at the terminal's width, which would split the messages the tests look for."""
    return subprocess.run([sys.executable, "-m", "difflsrec.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "250", **(env or {})}, check=False)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled every 20 ms), and reap it. Fails when the
    process ends first, or ``ready()`` does not come within ``timeout`` s: the kill this test is about
    did not happen."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the process ended before it could be killed"
    assert ready(), f"the moment to kill never came within {timeout:.0f} s"
    proc.kill()
    proc.wait()
