"""The local Apache Kafka broker: real round trips with both Python clients, durability across a
restart, and the start/stop/stale-pid bookkeeping of `difflsrec kafka`."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid

import pytest
from typer.testing import CliRunner

from stream.kafka import KafkaLauncherError, LocalKafka, Stopped
from stream.kafka.cli import app
from stream.kafka.launcher import new_cluster_id
from tests.stream.helpers import assert_child_dies_with_owner, process_gone

pytestmark = pytest.mark.kafka

# Kafka 4 removed old protocol versions (KIP-896) and logs each use as this exception; the client
# only sees a dropped connection. kafka-python 2.2.x was reported sending ListOffsets v0 to
# Kafka 4.0 (dpkp/kafka-python#2679); the installed 3.x negotiates versions and must not.
REMOVED_PROTOCOL_ERROR = "UnsupportedVersionException"


def _messages(count: int) -> dict[bytes, bytes]:
    return {f"user-{i}".encode(): f"item-{i}".encode() for i in range(count)}


def _produce(bootstrap: str, topic: str, messages: dict[bytes, bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in messages.items():
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> dict[bytes, bytes]:
    """Read the topic from the beginning in a new consumer group until ``expected`` records arrived."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest", enable_auto_commit=False
    )
    received: dict[bytes, bytes] = {}
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received.update((record.key, record.value) for record in records)
    # ListOffsets, the request whose v0 Kafka 4 rejects, with current kafka-python versions.
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    assert sum(consumer.end_offsets(partitions).values()) == expected
    assert set(consumer.beginning_offsets(partitions).values()) == {0}
    consumer.close()
    return received


def _assert_no_removed_protocol_use(broker: LocalKafka | None) -> None:
    if broker is not None:
        assert REMOVED_PROTOCOL_ERROR not in (broker.logs_dir / "server.log").read_text()


def test_kafka_python_round_trip(kafka_bootstrap, kafka_topic, kafka_local_broker):
    topic = kafka_topic(partitions=3)
    sent = _messages(30)
    _produce(kafka_bootstrap, topic, sent)
    assert _consume_all(kafka_bootstrap, topic, len(sent)) == sent
    _assert_no_removed_protocol_use(kafka_local_broker)


def test_aiokafka_round_trip(kafka_bootstrap, kafka_topic, kafka_local_broker):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = kafka_topic(partitions=2)
    sent = _messages(20)

    async def round_trip() -> dict[bytes, bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in sent.items():
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()
        group = f"test-{uuid.uuid4().hex[:8]}"
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group, auto_offset_reset="earliest")
        await consumer.start()
        received: dict[bytes, bytes] = {}
        try:
            async with asyncio.timeout(30):
                while len(received) < len(sent):
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        received.update((record.key, record.value) for record in records)
            end_offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in range(2)])
            assert sum(end_offsets.values()) == len(sent)
        finally:
            await consumer.stop()
        return received

    assert asyncio.run(round_trip()) == sent
    _assert_no_removed_protocol_use(kafka_local_broker)


def test_restart_keeps_data(local_kafka):
    broker = local_kafka()
    assert broker.start() is True
    cluster_id = broker.cluster_id()
    sent = _messages(10)
    _produce(broker.bootstrap_servers, "durable", sent)  # auto-created topic
    pid = broker.pid()

    assert broker.stop() is Stopped.CLEANLY
    assert process_gone(pid)
    assert not broker.pid_file.exists() and not broker.is_running()
    assert "shut down completed" in (broker.logs_dir / "server.log").read_text()  # a controlled shutdown

    assert broker.start() is True
    assert broker.cluster_id() == cluster_id  # the storage was reused, not formatted again
    assert _consume_all(broker.bootstrap_servers, "durable", len(sent)) == sent
    _assert_no_removed_protocol_use(broker)

    pid = broker.pid()
    assert broker.stop(timeout=0) is Stopped.KILLED  # no time for a controlled shutdown: SIGKILL
    assert process_gone(pid) and not broker.pid_file.exists()


def test_clients_made_before_a_broker_crash_work_soon_after_it_is_back(local_kafka):
    """Our kafka-python clients (EventProducer, TopicReader) cap their reconnect back-off at 1 s
    (stream/settings.py): with kafka-python's own 30 s cap, a reader that lived through a broker kill got new
    records 10-19 s after the broker was back in 5 of 6 rounds (benchmarks/reader_after_broker_restart.py)."""
    from stream.producer import EventProducer, TopicReader
    from stream.topics import create_topic

    broker = local_kafka()
    assert broker.start() is True
    create_topic(broker.bootstrap_servers, "events", 2)
    event = {"user_id": "u1", "item_id": "i1", "timestamp": 1_000_000_000}
    with EventProducer(broker.bootstrap_servers, "events") as producer, TopicReader(broker.bootstrap_servers, "events") as reader:
        producer.send({**event, "event_id": "before"}).get(timeout=30)
        assert [r.key for r in reader.records(timeout=3)] == [b"u1"]
        assert broker.stop(timeout=0) is Stopped.KILLED
        time.sleep(12)  # both clients fail to reconnect meanwhile, their back-off growing
        assert broker.start() is True
        back = time.monotonic()
        producer.send({**event, "event_id": "after"}).get(timeout=30)
        produced = time.monotonic() - back
        got = []
        while not got and time.monotonic() - back < 30:
            got = [r.value for r, _ in reader.poll(0.2)]
        received = time.monotonic() - back
    assert got and b'"after"' in got[0]
    assert produced < 5 and received < 5, (produced, received)


def test_cli_start_is_idempotent_and_stop_is_clean(local_kafka):
    broker = local_kafka()
    options = ["--data-dir", str(broker.data_dir), "--port", str(broker.port), "--controller-port", str(broker.controller_port)]
    runner = CliRunner()
    # A pid file left by a crashed broker (its pid no longer exists) must not block the start.
    crashed = subprocess.Popen(["true"])
    crashed.wait()
    broker.pid_file.write_text(f"{crashed.pid}\n")

    started = runner.invoke(app, ["start", *options])
    assert started.exit_code == 0, started.output
    assert started.stdout.strip() == broker.bootstrap_servers
    pid = broker.pid()
    assert pid is not None and pid != crashed.pid

    again = runner.invoke(app, ["start", *options])
    assert again.exit_code == 0 and "already running" in again.stderr
    assert broker.pid() == pid  # no second broker

    moved = runner.invoke(app, ["start", *options[:2], "--port", str(broker.port + 1)])
    assert moved.exit_code == 1 and "stop it first" in moved.stderr

    status = runner.invoke(app, ["status", "--data-dir", str(broker.data_dir)])
    assert status.exit_code == 0 and "answering" in status.stdout
    # the same directory named another way (a symlink): recognised, not taken for a stale pid file and removed
    link = broker.data_dir.parent / f"{broker.data_dir.name}-link"
    link.symlink_to(broker.data_dir)
    via_link = runner.invoke(app, ["status", "--data-dir", str(link)])
    assert via_link.exit_code == 0 and "answering" in via_link.stdout, via_link.output
    assert runner.invoke(app, ["start", "--data-dir", str(broker.data_dir), "--port", "70000"]).exit_code == 2  # out of range

    # a damaged server.properties must not keep the broker from being stopped (it went by a KeyError before)
    lines = broker.properties_file.read_text().splitlines()
    broker.properties_file.write_text("\n".join(lines[:3]) + "\n")
    stopped = runner.invoke(app, ["stop", "--data-dir", str(link)])
    assert stopped.exit_code == 0 and Stopped.CLEANLY.value in stopped.stdout, stopped.output
    assert process_gone(pid) and not broker.pid_file.exists()

    status = runner.invoke(app, ["status", "--data-dir", str(broker.data_dir)])
    assert status.exit_code == 1 and "not running" in status.stdout
    assert Stopped.NOT_RUNNING.value in runner.invoke(app, ["stop", "--data-dir", str(broker.data_dir)]).stdout


def test_stale_pid_file_of_another_process_is_not_signalled(local_kafka):
    broker = local_kafka()
    # The pid file names a live process that is not this data dir's broker (a reused pid).
    other = subprocess.Popen(["sleep", "60"])
    try:
        broker.pid_file.write_text(f"{other.pid}\n")
        assert not broker.is_running() and broker.has_stale_pid_file()
        assert broker.stop() is Stopped.NOT_RUNNING
        assert other.poll() is None  # still alive: stop() did not signal it
        assert not broker.pid_file.exists()
    finally:
        other.kill()
        other.wait()


def test_broker_dying_at_startup_reports_its_log(local_kafka):
    broker = local_kafka()
    # Storage that belongs to another node: the broker exits at once instead of serving.
    broker.log_dir.mkdir()
    meta = f"version=1\ncluster.id={new_cluster_id()}\nnode.id=7\ndirectory.id={new_cluster_id()}\n"
    (broker.log_dir / "meta.properties").write_text(meta)
    with pytest.raises(KafkaLauncherError, match="exited with code 1") as failure:
        broker.start()
    assert "Stored node id 7 doesn't match" in str(failure.value)  # the tail of server.log
    assert not broker.pid_file.exists() and not broker.is_running()


def test_an_owned_broker_stops_when_its_owner_is_killed(local_kafka, tmp_path):
    """Tests, the demo and the benchmarks own their broker: a SIGKILLed owner must not leave it running."""
    broker = local_kafka()
    ready = tmp_path / "ready"
    owner = (
        "import pathlib, time\n"
        "from stream.kafka import LocalKafka\n"
        f"b = LocalKafka({str(broker.data_dir)!r}, {broker.port}, {broker.controller_port})\n"
        "b.start(owned=True)\n"
        f"pathlib.Path({str(ready)!r}).write_text(str(b.pid()))\n"
        "time.sleep(600)\n"
    )
    # SIGTERM from the kernel: Kafka's controlled shutdown
    assert_child_dies_with_owner(owner, ready, "broker", stop_timeout=60, running=broker.is_running)


def _port_pair() -> int:
    """A free port whose successor is free too (the default controller port is --port + 1)."""
    from stream.kafka import find_free_port
    from stream.kafka.launcher import port_is_free

    for _ in range(50):
        port = find_free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise RuntimeError("no pair of free ports")


def test_two_brokers_started_with_their_own_port_only_do_not_clash(local_kafka):
    """The controller port defaulted to a fixed 9093: a second broker with another --port failed on a port
    the user never chose. Now it is --port + 1, and a restart keeps the one the data dir was started with."""
    runner = CliRunner()
    dirs = [local_kafka().data_dir, local_kafka().data_dir]
    ports = [_port_pair(), _port_pair()]
    while abs(ports[0] - ports[1]) < 2:
        ports[1] = _port_pair()
    try:
        for data_dir, port in zip(dirs, ports):
            started = runner.invoke(app, ["start", "--data-dir", str(data_dir), "--port", str(port)])
            assert started.exit_code == 0, started.output
            assert LocalKafka.from_data_dir(data_dir).controller_port == port + 1
        assert runner.invoke(app, ["stop", "--data-dir", str(dirs[0])]).exit_code == 0
        # a custom controller port is kept on a restart that names only the client port
        custom = _port_pair()
        while abs(custom - ports[0]) < 2 or abs(custom - ports[1]) < 2:
            custom = _port_pair()
        assert runner.invoke(app, ["start", "--data-dir", str(dirs[0]), "--port", str(ports[0]), "--controller-port", str(custom)]).exit_code == 0
        assert runner.invoke(app, ["stop", "--data-dir", str(dirs[0])]).exit_code == 0
        again = runner.invoke(app, ["start", "--data-dir", str(dirs[0]), "--port", str(ports[0])])
        assert again.exit_code == 0, again.output
        assert LocalKafka.from_data_dir(dirs[0]).controller_port == custom
    finally:
        for data_dir in dirs:
            runner.invoke(app, ["stop", "--data-dir", str(data_dir)])


def test_two_concurrent_first_starts_of_one_data_dir_leave_one_broker_and_both_succeed(local_kafka):
    """Both used to format the fresh storage; one broker then refused the other's cluster id and that
    `kafka start` failed. Now the second waits for the first and reports it already running."""
    import sys

    broker = local_kafka()
    command = [sys.executable, "-m", "difflsrec.cli", "kafka", "start", "--data-dir", str(broker.data_dir), "--port", str(broker.port), "--controller-port", str(broker.controller_port)]
    try:
        starts = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outputs = [p.communicate(timeout=180) for p in starts]
        assert [p.returncode for p in starts] == [0, 0], outputs
        said = sorted("already running" if "already running" in err else "started" for _, err in outputs)
        assert said == ["already running", "started"], outputs
        assert all(out.strip() == broker.bootstrap_servers for out, _ in outputs)
        assert broker.pid() is not None and broker.cluster_id() is not None
    finally:
        broker.stop()
