"""difflsrec.files.write_atomic: whole content or the old one, no temporary file left."""

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
