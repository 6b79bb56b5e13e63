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


def test_a_bad_setting_names_its_variable_and_value_on_one_line(tmp_path):
    """pydantic's own text was four lines per field with a link, and named neither DIFFLSREC_WEB_PORT nor the value."""
    result = difflsrec("worker", "--artifact", str(tmp_path / "none"), "--data-dir", str(tmp_path / "data"), "--top-n", "0", env={"DIFFLSREC_WEB_PORT": "70000"})
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "errors.pydantic.dev" not in result.stderr, result.stderr
    assert lines[0].startswith("error: invalid WorkerSettings: "), lines[0]
    assert "top_n=0 (environment DIFFLSREC_TOP_N or its option): Input should be greater than or equal to 1" in lines[0]
    assert "web_port='70000' (environment DIFFLSREC_WEB_PORT or its option): Input should be less than or equal to 65535" in lines[0]


def test_a_web_host_the_worker_cannot_listen_on_is_not_reported_as_a_port_in_use(tmp_path):
    """192.0.2.1 (TEST-NET-1) is no machine's own address: binding there fails, which was reported as "port not
    free: pick another with --web-port", a fix that cannot work."""
    result = difflsrec("worker", "--artifact", str(tmp_path / "none"), "--data-dir", str(tmp_path / "data"), "--web-host", "192.0.2.1", "--web-port", str(find_free_port()))
    assert result.returncode == 1, result.stderr
    assert "cannot listen on 192.0.2.1: --web-host" in result.stderr and "must be an IPv4 address or name of this machine" in result.stderr, result.stderr
    assert "not free" not in result.stderr, result.stderr
