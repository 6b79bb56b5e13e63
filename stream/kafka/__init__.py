"""A real single-node Apache Kafka broker for development and tests, run from its Maven Central jars."""

from stream.kafka.launcher import KafkaLauncherError, LocalKafka, Stopped, find_free_port, find_free_ports

__all__ = ["KafkaLauncherError", "LocalKafka", "Stopped", "find_free_port", "find_free_ports"]
