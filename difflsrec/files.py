"""Files shared by processes: writing one so that a reader sees the old content or the new, never half of it,
and holding a lock file that says which process holds it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusy(OSError):
    """Another process holds the lock; ``owner`` is what it wrote in the file ("pid N"), or ""."""

    def __init__(self, path: Path, owner: str):
        super().__init__(f"{path} is held by {owner or 'another process'}")
        self.owner = owner


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path`` (same file system, a name of this process's own, so
    concurrent writers do not clobber each other's) and rename it over ``path``. No fsync: for results and
    caches a crash may lose the file, never leave it torn."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def pid_lock(path: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``path``, created, with "pid N" written in it for whoever
    finds it held. Waits up to ``wait`` seconds for a holder to let go, then raises :class:`LockBusy`. The
    kernel drops the lock when the process dies, so a crash leaves no stale lock behind."""
    import fcntl

    deadline = time.monotonic() + wait
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    raise LockBusy(Path(path), handle.read().strip()) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
