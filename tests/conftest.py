"""Root test configuration: the real Kafka broker fixtures (tests/kafka_fixture.py)."""

pytest_plugins = ["tests.kafka_fixture"]
