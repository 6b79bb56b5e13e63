"""The artifact registry: versioned model directories and an atomically replaced ``LATEST`` pointer.

    <registry>/versions/<version>/   a complete artifact (model/artifact.py) plus index/ (FAISS)
    <registry>/LATEST                the live version's name, one line
    <registry>/.staging-*            versions being written; never read, removed by the next publisher
    <registry>/.training/            the state of a retraining in progress (bootstrap/job.py), so that a job
                                     killed while training goes on from its last epoch

A version is written into a staging directory on the same filesystem, every file and the directory are
fsynced, then the directory is renamed into ``versions/`` (atomic) and ``LATEST`` is replaced by writing a
temporary file, fsyncing it and ``os.replace``-ing it (atomic). A publisher killed at any point leaves either
a staging directory (ignored) or a complete version that is not live; readers never see a half-written one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LATEST = "LATEST"
VERSIONS = "versions"
STAGING_PREFIX = ".staging-"
TRAINING_DIR = ".training"


class RegistryError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(Path(dirpath) / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _readable_by_all(root: Path) -> None:
    """Give a staged version the modes a plain ``mkdir``/``open`` would under the umask: ``mkdtemp`` makes
    0700 and safetensors writes 0600, which hid every version from a worker running under another uid."""
    mask = _umask()
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o666 & ~mask)


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise RegistryError(f"{self.root} is a file, not a registry directory")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive among processes on this machine (an advisory ``flock`` on ``<registry>/.lock``): what a
        publisher decides from the live version (the gate) must still hold when it publishes, and its staging
        clean-up must not remove another publisher's staging directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS

    def versions(self) -> list[str]:
        """Published versions, oldest first (names sort by creation time)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir() and (p / "manifest.json").is_file())

    def latest(self) -> str | None:
        """The live version's name, or None when nothing was published yet."""
        try:
            name = (self.root / LATEST).read_text().strip()
        except FileNotFoundError:
            return None
        if not name or not (self.versions_dir / name / "manifest.json").is_file():
            available = self.versions()
            raise RegistryError(
                f"{self.root / LATEST} names {name!r}, which is not a published version; published: {', '.join(available[-5:]) or 'none'}"
                + (f" (`difflsrec registry set-live VERSION --registry {self.root}` makes one live)" if available else "")
            )
        return name

    def latest_path(self) -> Path | None:
        name = self.latest()
        return None if name is None else self.versions_dir / name

    def path_of(self, version: str) -> Path:
        path = self.versions_dir / version
        if not (path / "manifest.json").is_file():
            raise RegistryError(f"no published version {version!r} in {self.root}")
        return path

    def publish(self, version: str, write: Callable[[Path], None], make_live: bool = True) -> Path:
        """Run ``write(staging_dir)`` to fill a new version, then publish it atomically (see module doc)."""
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version name {version!r}")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        target = self.versions_dir / version
        if target.exists():
            raise RegistryError(f"version {version!r} already exists in {self.root}")
        self.remove_stale_staging()
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        try:
            write(staging)
            if not (staging / "manifest.json").is_file():
                raise RegistryError("the version writer produced no manifest.json")
            _readable_by_all(staging)
            _fsync_tree(staging)
            os.rename(staging, target)
            _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if make_live:
            self.set_latest(version)
        return target

    def set_latest(self, version: str) -> None:
        self.path_of(version)  # must exist
        tmp = self.root / f".{LATEST}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / LATEST)
        _fsync_dir(self.root)

    def prune(self, keep: int) -> list[str]:
        """Remove all but the ``keep`` newest versions, never the live one (call it holding :meth:`lock`).
        Returns the removed names, oldest first."""
        if keep < 1:
            raise ValueError(f"keep at least one version, got {keep}")
        live = self.latest()
        removed = [v for v in self.versions()[:-keep] if v != live]
        for version in removed:
            # renamed away first, so no reader ever sees a half-deleted version (versions() needs manifest.json)
            doomed = self.root / f"{STAGING_PREFIX}removed-{version}"
            os.rename(self.versions_dir / version, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        return removed

    def remove_stale_staging(self) -> list[Path]:
        """Staging directories left by killed publishers (call it holding :meth:`lock`, as the bootstrap job does:
        a running publisher's staging directory looks the same)."""
        removed = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(STAGING_PREFIX) and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed
