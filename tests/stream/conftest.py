"""Fixtures of the stream tests: tiny trained artifacts, built once per session."""

from __future__ import annotations

import pytest

from tests.stream.helpers import build_tiny_artifact


@pytest.fixture(scope="session")
def tiny_artifact_dir(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("artifact") / "tiny", seed=0)


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory):
    """A second model version (other seed): for re-encoding after a model change."""
    return build_tiny_artifact(tmp_path_factory.mktemp("artifact") / "other", seed=1)
