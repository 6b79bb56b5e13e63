"""Topic creation before Faust starts, and where a worker finds its model."""

from __future__ import annotations

import shutil

import pytest
from kafka import KafkaAdminClient

from bootstrap.registry import Registry, RegistryError
from stream.engine import resolve_artifact
from stream.settings import WorkerSettings
from stream.topics import ensure_topics


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
