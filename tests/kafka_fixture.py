"""Pytest plugin: a real Kafka broker for the test session, fresh brokers for tests that restart them,
and uniquely named topics so that tests sharing the session broker never collide.

``kafka_bootstrap`` picks, in order:
  1. an external cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` (or ``DIFFLSREC_BOOTSTRAP_SERVERS``);
  2. testcontainers' ``KafkaContainer`` in KRaft mode, when a Docker engine answers a ping;
  3. :class:`stream.kafka.LocalKafka` (Apache Kafka from its Maven Central jars) on free ports,
     also exposed as ``kafka_local_broker`` (None in the other two cases).
``local_kafka`` makes private brokers for tests that stop and restart them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from stream.kafka import LocalKafka, find_free_ports

DOCKER_PING_TIMEOUT_S = 3


def external_bootstrap() -> str | None:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("DIFFLSREC_BOOTSTRAP_SERVERS")


@functools.cache
def docker_available() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no daemon, no permission: all mean "no Docker here"
        return False


@pytest.fixture(scope="session")
def kafka_local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    """The session's LocalKafka, or None when an external cluster or a container serves the session.
    Tests use it to read the broker log (e.g. for protocol errors the clients never see)."""
    if external_bootstrap() or docker_available():
        yield None
        return
    # mktemp dirs share one parent, where LocalKafka caches the Maven classpath for every broker.
    with LocalKafka(tmp_path_factory.mktemp("kafka-session"), *find_free_ports(2)) as broker:
        yield broker


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_local_broker: LocalKafka | None) -> Iterator[str]:
    """Bootstrap address of a Kafka cluster shared by the whole session."""
    if kafka_local_broker is not None:
        yield kafka_local_broker.bootstrap_servers
    elif external_bootstrap():
        yield external_bootstrap()
    else:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()


@pytest.fixture
def local_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], LocalKafka]]:
    """Factory of unstarted LocalKafka brokers, each in its own temp dir on free ports; any still
    running at the end of the test are stopped, so a failing test leaves no broker behind, and each is
    owned (SIGTERM when this process dies), so a killed test run leaves none either."""
    brokers: list[LocalKafka] = []

    def make() -> LocalKafka:
        broker = LocalKafka(tmp_path_factory.mktemp("kafka"), *find_free_ports(2), owned=True)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


def create_topic(bootstrap_servers: str, partitions: int = 1, prefix: str = "test") -> str:
    """Create a topic with a unique name and wait until every partition has a leader (without waiting, the
    first produce may race the partition leader election); its name."""
    from stream.topics import create_topic as create

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    create(bootstrap_servers, name, partitions)
    return name


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Callable[..., str]:
    """``kafka_topic(partitions=1, prefix="test")`` creates a fresh topic on the session cluster."""

    def make(partitions: int = 1, prefix: str = "test") -> str:
        return create_topic(kafka_bootstrap, partitions, prefix)

    return make
