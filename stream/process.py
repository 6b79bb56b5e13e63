"""Run a worker as a real child process (tests and the benchmark): start it, wait until it serves, signal it.

Settings travel as ``DIFFLSREC_*`` environment variables, exactly as an operator would set them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from difflsrec.settings import env_name

WORKER = [sys.executable, "-m", "difflsrec.cli", "worker"]
PASSTHROUGH = [sys.executable, "-m", "stream.passthrough"]


def stop_with_this_process() -> Callable[[], None] | None:
    """``preexec_fn`` for a child that belongs to this process (a test's broker or worker, the demo's, the
    benchmark's): it gets SIGTERM (its graceful stop) when this process dies, even by SIGKILL, instead of
    living on as an orphan (prctl PR_SET_PDEATHSIG). Linux only, and only from the main thread: the signal
    follows the *thread* that forked the child, so a child started from a short-lived thread would be
    stopped with that thread; elsewhere ``None`` (an orphan then needs stopping by hand)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    # bound here, in the parent: the forked child only calls it (no dlopen or import between fork and exec,
    # where a lock another thread held at the fork would never be released)
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def terminate_with_parent() -> None:
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG

    return terminate_with_parent


def settings_env(bootstrap_servers: str, **settings) -> dict[str, str]:
    """Environment for a worker: ``KAFKA_BOOTSTRAP_SERVERS`` plus ``DIFFLSREC_<NAME>`` per setting."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers}
    env.update({env_name(name): str(value) for name, value in settings.items() if value is not None})
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` (all its threads) has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    def __init__(self, env: dict[str, str], web_port: int, log_path: Path, command: list[str] = WORKER):
        self.env = {**os.environ, **env, env_name("web_port"): str(web_port), "PYTHONUNBUFFERED": "1"}
        self.web_port = web_port
        self.log_path = Path(log_path)
        self.command = command
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, ready_timeout: float = 120.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=stop_with_this_process(),
            )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 120.0, partitions: int | None = None) -> dict:
        """Wait for GET /health to answer 200 (optionally with ``partitions`` partitions assigned)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with code {self.process.returncode}:\n{self.log_tail()}")
            status, body = self.get("/health")
            if status == 200 and (partitions is None or len(body.get("partitions", [])) == partitions):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready after {timeout:.0f}s (last /health: {status} {body}):\n{self.log_tail()}")
            # often: a worker starts consuming as soon as it is ready, and a benchmark reads its CPU clock when this
            # returns, so every poll interval of serving is left out of the measured window (0.3 s was up to 2,400
            # events of a pass-through draining a backlog at 8,000/s, 8 % of it)
            time.sleep(0.02)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict | str | None]:
        """(HTTP status, decoded JSON or text) of a GET on the worker; (0, None) if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=timeout) as response:
                return response.status, _decode(response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read(), error.headers.get_content_type())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples of GET /metrics, by sample name with labels (``name{label="x"}``)."""
        status, text = self.get("/metrics")
        if status != 200:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        return cpu_seconds(self.pid)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.process is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        return self.process.wait() if self.process is not None else 0

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _decode(body: bytes, content_type: str):
    if content_type == "application/json":
        return json.loads(body)
    return body.decode(errors="replace")
