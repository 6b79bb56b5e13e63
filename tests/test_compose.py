"""docker-compose.yml and the Dockerfile agree with the settings the code reads.

There is no Docker engine on the machine that runs these tests, so the compose file is never started
here: these checks parse it and hold it to the code (service names, images, the environment variables
each process reads, shared volumes, ports, and the commands being real `difflsrec` commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bootstrap.cli import app as bootstrap_app
from stream.cli import app as stream_app
from stream.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _settings_env_names() -> set[str]:
    names = {f"DIFFLSREC_{name.upper()}" for name in WorkerSettings.model_fields}
    return names | {"KAFKA_BOOTSTRAP_SERVERS"}


def _settings_of(env: dict) -> WorkerSettings:
    """The settings a process started with ``env`` (a compose service's environment) builds."""
    return WorkerSettings(**{k.removeprefix("DIFFLSREC_").lower(): v for k, v in env.items() if k.startswith("DIFFLSREC_")})


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "bootstrap", "worker"}
    assert services["kafka"]["image"].startswith("apache/kafka:4.")  # the official Apache Kafka image
    assert services["bootstrap"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert services["worker"]["image"] == services["bootstrap"]["image"]


def test_kraft_single_node(compose):
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@kafka:")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env[key] == "1"
    assert any(v.endswith(":/var/lib/kafka/data") for v in compose["services"]["kafka"]["volumes"])


@pytest.mark.parametrize("service", ["bootstrap", "worker"])
def test_environment_is_what_the_settings_read(compose, service):
    env = compose["services"][service]["environment"]
    unknown = set(env) - _settings_env_names()
    assert not unknown, f"{service} sets variables no settings class reads: {sorted(unknown)}"
    # the advertised listener is how the apps reach the broker
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] in advertised
    # the values parse into the settings the process will build
    settings = _settings_of(env)
    assert str(settings.home) == env["DIFFLSREC_HOME"]


def test_registry_volume_is_shared_and_ports_match(compose):
    worker, bootstrap = compose["services"]["worker"], compose["services"]["bootstrap"]
    home = worker["environment"]["DIFFLSREC_HOME"]
    assert home == bootstrap["environment"]["DIFFLSREC_HOME"]
    mount = lambda svc: {v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == home}  # noqa: E731
    assert mount(worker) & mount(bootstrap), "worker and bootstrap must share the registry volume"
    assert mount(worker) <= set(compose["volumes"])
    port = worker["environment"]["DIFFLSREC_WEB_PORT"]
    assert any(p.endswith(f":{port}") for p in worker["ports"])
    assert worker["environment"]["DIFFLSREC_WEB_HOST"] == "0.0.0.0"  # inside the container only


def test_the_worker_may_finish_its_own_stop(compose):
    """Docker SIGKILLs after ``stop_grace_period`` (10 s if unset); the worker ends an overlong stop itself
    after STOP_TIMEOUT (stream/app.py), so the grace period must be longer."""
    worker = compose["services"]["worker"]
    grace = worker.get("stop_grace_period", "10s")
    assert grace.endswith("s") and grace[:-1].isdigit(), grace
    assert int(grace[:-1]) > _settings_of(worker["environment"]).stop_timeout + 5


def test_commands_are_difflsrec_commands(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["difflsrec"]' in dockerfile and "pip install ." in dockerfile
    known = {c.name or c.callback.__name__ for c in stream_app.registered_commands + bootstrap_app.registered_commands}
    for service in ("bootstrap", "worker"):
        assert compose["services"][service]["command"][0] in known


def test_command_options_parse(compose):
    import typer.main

    for service, app in (("bootstrap", bootstrap_app), ("worker", stream_app)):
        command = compose["services"][service]["command"]
        group = typer.main.get_command(app)
        sub = group.get_command(None, command[0]) if hasattr(group, "get_command") else group
        sub.make_context(command[0], list(command[1:]))  # raises on an unknown option or a bad value
