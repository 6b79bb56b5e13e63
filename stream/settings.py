"""Settings of the streaming processes (worker, producers, the local broker's clients).

Kafka's address comes from the conventional ``KAFKA_BOOTSTRAP_SERVERS``
(``DIFFLSREC_BOOTSTRAP_SERVERS`` is accepted too, to match the other ``DIFFLSREC_*`` settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from difflsrec.settings import CommonSettings, env_name
from stream.schemas import Limits

#: Settings every kafka-python client here starts from (producers, readers, admin clients; a caller's own
#: keywords win). kafka-python backs off reconnecting exponentially up to ``reconnect_backoff_max_ms``, 30 s
#: by default: while a broker is away the wait grows, and after it is back a client may sit out the rest of a
#: 30 s wait. Measured (benchmarks/reader_after_broker_restart.py) with a reader that lived through a broker
#: SIGKILL, 10 s down and a 14-15 s restart, 3 rounds: new records reached it 0.8, 18.0 and 19.2 s after they
#: were produced with the default, 0.9-1.4 s with 1 s. (aiokafka, the worker's client, retries every 100 ms.)
KAFKA_PYTHON_CLIENT_DEFAULTS: dict = {"reconnect_backoff_max_ms": 1000}


def kafka_python_config(**config) -> dict:
    """``config`` over :data:`KAFKA_PYTHON_CLIENT_DEFAULTS`."""
    return {**KAFKA_PYTHON_CLIENT_DEFAULTS, **config}


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


class WorkerSettings(KafkaSettings):
    """Everything the streaming worker reads: ``DIFFLSREC_<FIELD>`` environment variables (or ``.env``),
    overridden by ``difflsrec worker`` options. Defaults serve a single local worker."""

    app_id: str = Field("difflsrec-worker", description="Faust app id = Kafka consumer group; tables' changelog topics are prefixed with it")
    # topics
    interactions_topic: str = "interactions"
    recommendations_topic: str = "recommendations"
    dlq_topic: str = "interactions.dlq"
    model_updates_topic: str = Field("model-updates", description="reserved for model hot swap (announced artifact versions)")
    partitions: int = Field(8, ge=1, description="partitions of topics the worker creates; an existing interactions topic keeps its own count")
    replication_factor: int = Field(1, ge=1)
    # micro-batching and serving
    batch_max: int = Field(256, ge=1, description="most events per micro-batch (stream.take max)")
    batch_within: float = Field(0.02, gt=0, description="seconds to wait for a batch to fill before serving what arrived")
    top_n: int = Field(10, ge=1)
    exclude_seen: bool = Field(True, description="never recommend items in the user's bounded history")
    fuse_every_event: bool = Field(
        False,
        description="fuse a list for every event; by default a user with several events in one micro-batch gets one list, "
        "computed after the last of them, in every one of those events' messages (see as_of_offset)",
    )
    history_len: int = Field(200, ge=1, description="raw item ids kept per user (exclusions, re-encoding after a model change)")
    seed_states: bool = Field(
        True,
        description="start a user new to the table from the artifact's history of them (histories.npz) when their first event is "
        "later than it; false: every new user starts empty",
    )
    artifact: Path | None = Field(None, description="model artifact dir, or a registry dir whose live version (LATEST) is served (default: <home>/registry)")
    inference_steps: int | None = Field(None, ge=1, description="reverse diffusion steps at serving time (default: the artifact's)")
    index_kind: Literal["flat", "ivf", "hnsw"] | None = Field(
        None, description="the item index to search: unset, the artifact's own (what bootstrap --index-kind built; flat when it has "
        "none); set, that kind, built from the model's item embeddings when the artifact's is another",
    )
    hot_swap: bool = Field(True, description="switch to new versions announced on model-updates or published in the served registry")
    model_poll_interval: float = Field(5.0, gt=0, description="seconds between checks of the served registry's LATEST pointer")
    # the common DIFFLSREC_THREADS, defaulting to 1 here: a micro-batch's tensors are tiny, and Faust's
    # event loop needs the other core (the worker applies it to torch and faiss)
    threads: int | None = Field(1, ge=1, description="torch and faiss threads of the worker")
    engine_thread: bool = Field(True, description="run the model and FAISS in a thread of their own, beside Faust's event loop")
    # uvloop: ~7 % less worker CPU per event at 1,000 events/s and a shorter latency tail (stream/README.md)
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", description="event loop of the worker process (asyncio's own if uvloop is missing)")
    # ~30-50 -> ~1 us of collections per event with many users per batch (stream.app.settle_heap, stream/README.md)
    gc_threshold: tuple[int, int, int] = Field((50_000, 20, 100), description="the garbage collector's thresholds (gc.set_threshold) in the worker and the pass-through, e.g. [700, 10, 10] for Python's own")
    # input validation
    max_event_bytes: int = Field(4096, ge=64, description="larger events go to the DLQ as oversize")
    min_event_time: float = Field(631_152_000.0, description="earliest accepted event time, epoch seconds (1990-01-01)")
    max_future_skew: float = Field(86_400.0, ge=0, description="accepted seconds of event time ahead of the worker's clock")
    # process: web server, local state, consumer group timings
    web_host: str = Field("127.0.0.1", description="address the HTTP server binds and advertises to the other workers")
    web_port: int = Field(6066, ge=1, le=65535)
    web_advertised_host: str | None = Field(None, description="host the other workers reach this one's HTTP server at (default: web_host, or this machine's host name when web_host is a wildcard such as 0.0.0.0)")
    worker_data_dir: Path | None = Field(None, description="RocksDB tables of this worker (default: <home>/worker/<app_id>); one per worker process")
    # the changelog topic is the table's source of truth; RocksDB's log made each state put ~5x dearer (stream/table_store.py)
    store_wal: bool = Field(False, description="keep RocksDB's write-ahead log for the users table (off: a crashed worker replays more of the changelog on restart)")
    session_timeout: float = Field(30.0, gt=0, description="seconds before the group considers a silent worker dead")
    heartbeat_interval: float = Field(3.0, gt=0)
    rebalance_timeout: float = Field(60.0, gt=0)
    commit_interval: float = Field(1.0, gt=0, description="seconds between offset commits (each flushes the producer first)")
    # a stop without a broker can wait on it for minutes (stream/app.py, _DeadlineWorker); keep this under the
    # supervisor's grace period (docker-compose.yml: 35 s)
    stop_timeout: float = Field(25.0, gt=0, description="seconds a graceful stop (SIGTERM) may take; past it the worker exits with code 3, as if killed (uncommitted events come again)")
    # without a broker aiokafka logs ~125 ERROR lines a second (stream/logs.py)
    log_repeat_window: float = Field(30.0, ge=0, description="seconds for which the Kafka client's repeated log records (same logger, level and message) are held back and then counted in one line; 0 logs every one")
    # aiokafka retries a commit for as long as the broker is away and Faust's stop waits for it
    # (stream/consumer.py); a stop may wait for two commits
    commit_timeout: float = Field(10.0, gt=0, description="seconds an offset commit may wait for the broker before it is given up (the events after the last commit then come again after a restart)")
    # fewer, larger fetches at moderate loads: 25-33 % less worker CPU per event at 1,000 events/s (two A/B
    # sets), ~30 % at 2,000, p99 equal or lower (stream/consumer.py, stream/README.md); Faust's own values are
    # 1 byte and 1.5 s
    fetch_min_bytes: int = Field(65536, ge=1, description="bytes the broker gathers before it answers a fetch (or fetch_max_wait passes); 1 = answer at once")
    fetch_max_wait: float = Field(0.005, gt=0, description="seconds the broker may hold a fetch while fewer than fetch_min_bytes are there")
    producer_linger: float = Field(0.005, ge=0, description="seconds the producer waits to fill a request (fewer, larger requests)")
    log_every: float = Field(30.0, gt=0, description="seconds between INFO lines with the running counts")
    profile: Path | None = Field(None, description="write a cProfile of the whole worker here when it stops (slows it down)")

    @property
    def advertised_host(self) -> str:
        """Where the other workers forward a request for a user this worker owns."""
        import socket

        if self.web_advertised_host:
            return self.web_advertised_host
        return socket.gethostname() if self.web_host in ("0.0.0.0", "::", "") else self.web_host

    @property
    def datadir(self) -> Path:
        return self.worker_data_dir or self.home / "worker" / self.app_id

    def event_limits(self) -> Limits:
        """What the worker accepts beyond the event schema: the worker checks every record with them,
        ``difflsrec send`` every event before it publishes it."""
        return Limits(max_event_bytes=self.max_event_bytes, min_event_time=self.min_event_time, max_future_skew=self.max_future_skew)


def unknown_settings(environ) -> list[str]:
    """``DIFFLSREC_*`` variables in ``environ`` that set nothing (pydantic-settings ignores them: a typo such as
    ``DIFFLSREC_BACH_MAX`` left the default in force without a word), each with the closest setting's name."""
    import difflib

    known = {env_name(name) for name in WorkerSettings.model_fields}
    out = []
    for name in sorted(environ):
        if name.startswith(CommonSettings.model_config["env_prefix"]) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            out.append(f"{name} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return out
