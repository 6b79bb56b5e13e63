"""Create the worker's topics before Faust starts, so every topic and table agrees on one partition count.

Faust creates its changelog topics with the table's ``partitions`` and refuses to write when the source
topic has a different count; the source topic may already exist (created by producers or an operator)
with any count. So the count is read from the interactions topic when it exists and used everywhere.
"""

from __future__ import annotations

import logging
import socket

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from stream.settings import WorkerSettings, kafka_python_config

log = logging.getLogger(__name__)


def ensure_topics(settings: WorkerSettings) -> int:
    """Create missing topics; returns the partition count of the interactions topic."""
    return ensure_topics_created(settings)[0]


def ensure_topics_created(settings: WorkerSettings) -> tuple[int, bool]:
    """:func:`ensure_topics`, also saying whether the interactions topic was created here (one admin
    connection for both)."""
    with KafkaAdminClient(**kafka_python_config(bootstrap_servers=settings.bootstrap_servers, client_id=f"{settings.app_id}-admin")) as admin:
        partitions = _partition_count(admin, settings.interactions_topic)
        created = partitions is None
        if created:
            _create(admin, settings.interactions_topic, settings.partitions, settings.replication_factor)
            partitions = settings.partitions
        elif partitions != settings.partitions:
            log.info("topic %s exists with %d partitions; using that count (setting says %d)", settings.interactions_topic, partitions, settings.partitions)
        for name, count in ((settings.recommendations_topic, partitions), (settings.dlq_topic, partitions), (settings.model_updates_topic, 1)):
            _create_if_missing(admin, name, count, settings.replication_factor)
    return partitions, created


def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
    if topic not in admin.list_topics():
        return None
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def _create_if_missing(admin: KafkaAdminClient, topic: str, partitions: int, replication: int) -> None:
    if _partition_count(admin, topic) is None:
        _create(admin, topic, partitions, replication)


def _create(admin: KafkaAdminClient, topic: str, partitions: int, replication: int) -> None:
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": replication}}, wait_for_metadata=True)
        log.info("created topic %s (%d partitions)", topic, partitions)
    except TopicAlreadyExistsError:
        pass  # another worker created it meanwhile


def create_topic(bootstrap_servers: str, topic: str, partitions: int, replication: int = 1) -> None:
    """Create one topic (nothing if it exists), waiting until its partitions have leaders."""
    with KafkaAdminClient(**kafka_python_config(bootstrap_servers=bootstrap_servers, client_id="difflsrec-admin")) as admin:
        _create(admin, topic, partitions, replication)


def ensure_updates_topic(bootstrap_servers: str, topic: str, replication: int = 1) -> None:
    """The model-updates topic with ONE partition (so every reader sees the versions in the order they
    were published), created before the first announcement instead of auto-created with the broker's
    default partition count."""
    with KafkaAdminClient(**kafka_python_config(bootstrap_servers=bootstrap_servers, client_id="difflsrec-bootstrap-admin")) as admin:
        _create_if_missing(admin, topic, 1, replication)


def partition_count(bootstrap_servers: str, topic: str) -> int | None:
    """How many partitions ``topic`` has; None when it does not exist."""
    with KafkaAdminClient(**kafka_python_config(bootstrap_servers=bootstrap_servers, client_id="difflsrec-admin")) as admin:
        return _partition_count(admin, topic)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client, kafka-python, and aiokafka under
    Faust compute it) gives a record with this key: where the worker's recommendations for a user go."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def require_reachable(bootstrap_servers: str, timeout: float = 3.0) -> None:
    """Raise ``KafkaConnectionError`` at once when no bootstrap server accepts a TCP connection, instead of
    kafka-python's 30 s of retries, each logged (a command's ~120 log lines before its error)."""
    from kafka.errors import KafkaConnectionError

    for host, port in bootstrap_addresses(bootstrap_servers):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError:
            continue
    raise KafkaConnectionError(f"no Kafka broker answers at {bootstrap_servers}")


DEFAULT_KAFKA_PORT = 9092  # what kafka-python, aiokafka and Faust connect to when an entry names no port


def bootstrap_addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    """(host, port) of each entry of a bootstrap list, read as the Kafka clients read it: ``host:port``, ``host``
    (port 9092), ``[::1]:9092``, ``[::1]`` or a bare ``::1``, with a ``PLAINTEXT://`` or ``kafka://`` prefix ignored.
    An entry whose port is not a number is skipped. (Entries without a port used to be skipped too, so
    ``KAFKA_BOOTSTRAP_SERVERS=kafka`` refused to start every command the clients would have run, and kept a
    running worker's /health at 503.)"""
    addresses = []
    for server in bootstrap_servers.split(","):
        server = server.strip()
        if "://" in server:
            server = server.split("://", 1)[1]
        server = server.rstrip("/")
        if server.startswith("["):  # [v6]:port or [v6]
            host, _, rest = server[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif server.count(":") == 1:
            host, _, port = server.partition(":")
        else:  # a host name, or an IPv6 address without brackets (and so without a port)
            host, port = server, ""
        if host and (port == "" or port.isdigit()):
            addresses.append((host, int(port) if port else DEFAULT_KAFKA_PORT))
    return addresses
