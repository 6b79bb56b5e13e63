"""Topic creation before Faust starts, and where a worker finds its model."""

from __future__ import annotations

import shutil

import pytest
from kafka import KafkaAdminClient

from bootstrap.registry import Registry, RegistryError
from stream.engine import resolve_artifact
from stream.settings import WorkerSettings
from stream.topics import bootstrap_addresses, ensure_topics


def _partitions(bootstrap: str, topic: str) -> int:
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


@pytest.mark.kafka
def test_an_existing_interactions_topic_sets_the_partition_count_of_every_topic(kafka_bootstrap, kafka_topic):
    existing = kafka_topic(partitions=2, prefix="in")
    names = {"recommendations_topic": f"{existing}-out", "dlq_topic": f"{existing}-dlq", "model_updates_topic": f"{existing}-mu"}
    settings = WorkerSettings(bootstrap_servers=kafka_bootstrap, interactions_topic=existing, partitions=5, **names)
    assert ensure_topics(settings) == 2
    assert _partitions(kafka_bootstrap, names["recommendations_topic"]) == 2 == _partitions(kafka_bootstrap, names["dlq_topic"])
    assert _partitions(kafka_bootstrap, names["model_updates_topic"]) == 1
    assert ensure_topics(settings) == 2  # idempotent


def test_artifact_dir_or_the_live_version_of_a_registry(tiny_artifact_dir, tmp_path):
    assert resolve_artifact(tiny_artifact_dir) == tiny_artifact_dir
    registry = Registry(tmp_path / "registry")
    with pytest.raises(FileNotFoundError, match="neither a model artifact"):
        resolve_artifact(registry.root)  # nothing published yet
    live = registry.publish("v1", lambda staging: shutil.copytree(tiny_artifact_dir, staging, dirs_exist_ok=True))
    assert resolve_artifact(registry.root) == live
    (registry.root / "LATEST").write_text("v-missing")
    with pytest.raises(RegistryError):
        resolve_artifact(registry.root)


@pytest.mark.kafka
def test_the_model_updates_topic_is_created_with_one_partition_before_the_first_announcement(kafka_bootstrap):
    import uuid

    from stream.topics import ensure_updates_topic

    name = f"mu-{uuid.uuid4().hex[:8]}"
    ensure_updates_topic(kafka_bootstrap, name)
    assert _partitions(kafka_bootstrap, name) == 1
    ensure_updates_topic(kafka_bootstrap, name)  # idempotent
    assert _partitions(kafka_bootstrap, name) == 1


def test_a_users_partition_is_where_fausts_producer_and_kafka_python_put_its_records():
    """``follow --user`` reads only ``key_partition``'s partition of the recommendations, which the worker
    publishes through Faust's aiokafka producer; events sent with kafka-python land there too."""
    from aiokafka.partitioner import DefaultPartitioner as FaustSide
    from kafka.partitioner.default import murmur2

    from stream.topics import key_partition

    faust_side = FaustSide()
    keys = [f"user-{i}".encode() for i in range(300)] + ["用户-7".encode(), b"", b"A" * 500]
    for partitions in (1, 3, 8, 13):
        everything = list(range(partitions))
        got = [key_partition(key, partitions) for key in keys]
        assert got == [faust_side(key, everything, everything) for key in keys]
        assert got == [(murmur2(key) & 0x7FFFFFFF) % partitions for key in keys]  # kafka-python's DefaultPartitioner
        assert partitions == 1 or len(set(got)) == partitions  # spread over every partition, not a constant


@pytest.mark.kafka
def test_partition_count_of_a_topic_or_none_when_it_is_missing(kafka_bootstrap, kafka_topic):
    from stream.topics import partition_count

    assert partition_count(kafka_bootstrap, kafka_topic(partitions=3, prefix="count")) == 3
    assert partition_count(kafka_bootstrap, "no-such-topic-here") is None


def test_bootstrap_addresses_are_read_as_the_kafka_clients_read_them():
    """An entry without a port is port 9092 to kafka-python, aiokafka and Faust; it was skipped here, so
    KAFKA_BOOTSTRAP_SERVERS=kafka refused every command and kept a running worker's /health at 503."""
    assert bootstrap_addresses("kafka") == [("kafka", 9092)]
    assert bootstrap_addresses("a:9093, b ,[::1]:9094,[::1],::1") == [("a", 9093), ("b", 9092), ("::1", 9094), ("::1", 9092), ("::1", 9092)]
    assert bootstrap_addresses("PLAINTEXT://kafka:9095,kafka://k2") == [("kafka", 9095), ("k2", 9092)]
    assert bootstrap_addresses("host:notaport,,") == []
