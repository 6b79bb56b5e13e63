"""What a user sees when their input or environment is wrong: one line that says what and where, not a
traceback (``--verbose`` keeps the traceback), and exit code 1. Run as a user runs it: the console script
in a subprocess."""

from __future__ import annotations

from stream.kafka import find_free_port
from tests.processes import difflsrec


def test_a_missing_input_file_is_one_line_and_verbose_keeps_the_traceback(tmp_path):
    missing = tmp_path / "ratings.dat"
    plain = difflsrec("benchmark", "--input", str(missing), "--models", "pop", "--out", str(tmp_path / "out"))
    assert plain.returncode == 1
    assert f"error: input file not found: {missing}" in plain.stderr and "Traceback" not in plain.stderr, plain.stderr
    assert "FileNotFoundError at " in plain.stderr and "--verbose shows the traceback" in plain.stderr

    verbose = difflsrec("-v", "benchmark", "--input", str(missing), "--models", "pop", "--out", str(tmp_path / "out"))
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "FileNotFoundError" in verbose.stderr


def test_a_bad_device_fails_with_the_accepted_values(tmp_path):
    result = difflsrec("benchmark", "--input", str(tmp_path / "x.csv"), "--device", "gpu", "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'" in result.stderr, result.stderr


def test_the_worker_checks_its_artifact_before_it_contacts_kafka(tmp_path):
    nobody = f"127.0.0.1:{find_free_port()}"  # no broker there: had the worker gone to Kafka first, it would say so
    result = difflsrec("worker", "--artifact", str(tmp_path / "none"), "--data-dir", str(tmp_path / "data"), env={"KAFKA_BOOTSTRAP_SERVERS": nobody})
    assert result.returncode == 1, result.stderr
    assert "is neither a model artifact" in result.stderr and "Kafka" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_the_worker_without_a_broker_says_how_to_get_one(tiny_artifact_dir, tmp_path):
    nobody = f"127.0.0.1:{find_free_port()}"
    result = difflsrec("worker", "--artifact", str(tiny_artifact_dir), "--data-dir", str(tmp_path / "data"), env={"KAFKA_BOOTSTRAP_SERVERS": nobody})
    assert result.returncode == 1, result.stderr
    assert "hint: no Kafka broker answers: start one with `difflsrec kafka start`" in result.stderr and "Traceback" not in result.stderr, result.stderr
