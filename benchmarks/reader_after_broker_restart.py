"""How long a kafka-python reader that lived through a broker crash waits before it reads again.

A local broker (stream/kafka) is SIGKILLed (or stopped cleanly with ``--clean``), left down ``--down``
seconds, started again on the same storage; then 30 records are produced and the time until a
``TopicReader`` created before the crash has all of them is printed, per round. ``--backoff-max-ms``
overrides the readers' reconnect back-off cap (default: the project's, stream/settings.py
``KAFKA_PYTHON_CLIENT_DEFAULTS``; kafka-python's own is 30000).

    .venv/bin/python benchmarks/reader_after_broker_restart.py --rounds 3
    .venv/bin/python benchmarks/reader_after_broker_restart.py --rounds 3 --backoff-max-ms 30000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kafka import KafkaProducer  # noqa: E402

from stream.kafka import find_free_ports  # noqa: E402
from stream.kafka.launcher import LocalKafka  # noqa: E402
from stream.producer import TopicReader  # noqa: E402
from stream.settings import kafka_python_config  # noqa: E402
from stream.topics import create_topic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--down", type=float, default=10.0, help="seconds the broker stays down")
    ap.add_argument("--clean", action="store_true", help="stop the broker cleanly instead of SIGKILL")
    ap.add_argument("--backoff-max-ms", type=int, default=None)
    args = ap.parse_args()
    override = {} if args.backoff_max_ms is None else {"reconnect_backoff_max_ms": args.backoff_max_ms}
    print("reader config:", kafka_python_config(**override))
    with tempfile.TemporaryDirectory(prefix="reader-restart-") as tmp:
        broker = LocalKafka(Path(tmp) / "kafka", *find_free_ports(2))
        assert broker.start() is True
        try:
            create_topic(broker.bootstrap_servers, "restart", 3)
            with TopicReader(broker.bootstrap_servers, "restart", **override) as reader:
                seen: set[str] = set()

                def produce(tag: str) -> set[str]:
                    producer = KafkaProducer(**kafka_python_config(bootstrap_servers=broker.bootstrap_servers))
                    values = {f"{tag}-{k}" for k in range(30)}
                    for k, value in enumerate(sorted(values)):
                        producer.send("restart", key=f"u{k}".encode(), value=value.encode())
                    producer.flush()
                    producer.close()
                    return values

                def wait_for(values: set[str], timeout: float = 120.0) -> float:
                    started = time.monotonic()
                    while not values <= seen and time.monotonic() - started < timeout:
                        seen.update(record.value.decode() for record, _ in reader.poll(0.2))
                    return time.monotonic() - started if values <= seen else float("nan")

                print(f"before any restart: {wait_for(produce('r0')):.2f} s")
                for k in range(1, args.rounds + 1):
                    broker.stop(timeout=60 if args.clean else 0)
                    time.sleep(args.down)
                    started = time.monotonic()
                    assert broker.start() is True
                    back = time.monotonic() - started
                    print(f"round {k}: broker back after {back:.1f} s; the reader had the new records after {wait_for(produce(f'r{k}')):.2f} s", flush=True)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
