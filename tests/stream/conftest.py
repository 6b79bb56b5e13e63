"""Fixtures of the stream tests: a second tiny trained artifact (the first, ``tiny_artifact_dir``, is in
tests/conftest.py: tests/test_cuda.py uses it too)."""

from __future__ import annotations

import pytest

from tests.stream.helpers import build_tiny_artifact


@pytest.fixture(scope="session")
def other_artifact_dir(tmp_path_factory):
    """A second model version (other seed): for re-encoding after a model change."""
    return build_tiny_artifact(tmp_path_factory.mktemp("artifact") / "other", seed=1)
