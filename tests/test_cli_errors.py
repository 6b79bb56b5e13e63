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


def test_device_from_the_environment_reaches_train_as_the_flag_does(tmp_path):
    """DIFFLSREC_DEVICE is a documented setting: train, benchmark and reproduce ignored it (bootstrap honoured
    it), so DIFFLSREC_DEVICE=cpu did not keep training off a GPU. Here CUDA, which this machine lacks, is refused
    the same way from the flag and from the environment (the environment's used to train on the CPU, exit 0)."""
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    data = tmp_path / "tiny.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"u{u},i{(u + k) % 12},{1000 * u + k}\n" for u in range(30) for k in range(8)))
    args = ("train", "--input", str(data), "--kcore", "0", "--epochs", "1", "--out", str(tmp_path / "out"))
    flag = difflsrec(*args, "--device", "cuda")
    env = difflsrec(*args, env={"DIFFLSREC_DEVICE": "cuda"})
    assert flag.returncode == env.returncode == 1, env.stderr
    assert "device 'cuda' requested but torch.cuda.is_available() is False" in env.stderr, env.stderr


def _commands():
    import typer.main

    from difflsrec.cli import _mount, app

    if not app.registered_commands:
        _mount()
    return app, typer.main.get_command(app)


def test_seed_and_device_options_read_their_documented_environment_variables():
    """DIFFLSREC_SEED was documented and parsed but read by no command; every --seed and --device now defaults to
    its variable (a flag still wins)."""
    commands = _commands()[1].commands
    envvars = {}
    for name, command in commands.items():
        for sub in getattr(command, "commands", {"": command}).values():
            for param in sub.params:
                if param.name in ("seed", "device"):
                    envvars[(name, sub.name, param.name)] = param.envvar
    seeds = {k: v for k, v in envvars.items() if k[2] == "seed"}
    devices = {k: v for k, v in envvars.items() if k[2] == "device"}
    assert len(seeds) >= 6 and set(seeds.values()) == {"DIFFLSREC_SEED"}, seeds
    assert len(devices) >= 3 and set(devices.values()) == {"DIFFLSREC_DEVICE"}, devices


def test_the_threads_flag_wins_over_the_environment_for_the_worker_too(monkeypatch):
    """`difflsrec --threads 3 worker` set torch's threads, then the worker set them again from its settings
    (DIFFLSREC_THREADS, default 1): the flag was lost."""
    from typer.testing import CliRunner

    from stream.settings import WorkerSettings

    app, _ = _commands()
    monkeypatch.setenv("DIFFLSREC_THREADS", "2")
    result = CliRunner().invoke(app, ["--threads", "3", "models"])
    assert result.exit_code == 0, result.output
    assert WorkerSettings().threads == 3


def test_a_mistyped_index_kind_is_refused_before_bootstrap_trains(tmp_path):
    result = difflsrec("bootstrap", "--input", str(tmp_path / "none.csv"), "--index-kind", "hnws", "--no-announce", "--registry", str(tmp_path / "reg"))
    assert result.returncode == 2 and "--index-kind must be flat, ivf or hnsw, got 'hnws'" in result.stderr, result.stderr
