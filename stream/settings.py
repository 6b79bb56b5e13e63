"""Settings of the streaming processes (worker, producers, the local broker's clients).

Kafka's address comes from the conventional ``KAFKA_BOOTSTRAP_SERVERS``
(``DIFFLSREC_BOOTSTRAP_SERVERS`` is accepted too, to match the other ``DIFFLSREC_*`` settings).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from difflsrec.settings import CommonSettings


class KafkaSettings(CommonSettings):
    """Where the Kafka cluster is; topic names and worker settings extend this class."""

    # Merged with CommonSettings' config. validate_by_name: code may pass KafkaSettings(bootstrap_servers=...).
    # env_ignore_empty: `KAFKA_BOOTSTRAP_SERVERS=` (as compose files often pass it) means the default, not "".
    model_config = SettingsConfigDict(validate_by_name=True, env_ignore_empty=True)

    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "DIFFLSREC_BOOTSTRAP_SERVERS"),
        description="comma-separated host:port list; the default is `difflsrec kafka start`'s broker",
    )
