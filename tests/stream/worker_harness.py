"""A deployment of real worker processes on the session's Kafka broker, with its own topics and group."""

from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections import defaultdict
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from stream.process import WORKER, WorkerProcess, settings_env
from stream.producer import EventProducer, TopicReader
from stream.schemas import Recommendation
from stream.settings import WorkerSettings
from stream.topics import ensure_topics

FAST_GROUP = dict(session_timeout=6, heartbeat_interval=1, rebalance_timeout=20, commit_interval=0.5)


class Deployment:
    """Unique app id and topics; workers started here are killed at the end of the test."""

    def __init__(self, bootstrap: str, artifact: Path, workdir: Path, partitions: int = 3, **settings):
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.settings = {
            **dict(
                app_id=f"test-{suffix}", interactions_topic=f"in-{suffix}", recommendations_topic=f"out-{suffix}", dlq_topic=f"dlq-{suffix}",
                model_updates_topic=f"mu-{suffix}", partitions=partitions, artifact=artifact, batch_max=64, batch_within=0.02, top_n=5,
                threads=1, log_every=600, **FAST_GROUP,
            ),
            **settings,  # a test's own settings win
        }
        # created here, so that the test's producer cannot auto-create them with one partition
        self.partitions = ensure_topics(WorkerSettings(bootstrap_servers=bootstrap, **self.settings))
        self.workers: list[WorkerProcess] = []
        self.recommendations: dict[str, list[Recommendation]] = defaultdict(list)  # by event id
        self._reader: TopicReader | None = None
        self._positions: set[tuple[int, int]] = set()  # (partition, offset) of the messages collected

    def start_worker(self, name: str, port: int, ready_timeout: float = 120.0, command: list[str] = WORKER) -> WorkerProcess:
        env = settings_env(self.bootstrap, **self.settings, worker_data_dir=self.data_dir(name))
        # one log per start: with one shared file, logs() showed the restarted worker's tail once per start and
        # never the last lines of the worker it replaced, which a failed restart test needs to be diagnosed
        starts = sum(w.log_path.name.startswith(f"{name}.") for w in self.workers)
        worker = WorkerProcess(env, port, self.workdir / f"{name}.{starts}.log", command)
        self.workers.append(worker)
        return worker.start(ready_timeout)

    def data_dir(self, name: str) -> Path:
        return self.workdir / f"data-{name}"

    def producer(self) -> EventProducer:
        return EventProducer(self.bootstrap, self.settings["interactions_topic"])

    def produce(self, events: list[dict], per_second: float | None = None) -> None:
        with self.producer() as producer:
            started = time.monotonic()
            for k, event in enumerate(events):
                if per_second:
                    delay = started + k / per_second - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                producer.send(event)

    def produce_in_background(self, events: list[dict], per_second: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(events, per_second), daemon=True)
        thread.start()
        return thread

    def collect(self, event_ids: set[str], timeout: float = 90.0, reread_after: float = 20.0) -> dict[str, list[Recommendation]]:
        """Read recommendations until every event id in ``event_ids`` has one (or the timeout passes).

        When nothing arrives for ``reread_after`` seconds while events are unanswered, the topic is read
        again by a fresh reader (records already seen are skipped by position), and a warning says whether
        that found anything: a restart test failed twice in ~33 CI runs with the collected messages ending
        at the kill, and a stalled reader is one of the two explanations (the other, a restarted worker
        that consumes nothing, still fails the test, and ``diagnose`` tells them apart)."""
        if self._reader is None:
            self._reader = TopicReader(self.bootstrap, self.settings["recommendations_topic"])
        progress = time.monotonic()
        deadline = progress + timeout
        while not event_ids <= self.recommendations.keys() and time.monotonic() < deadline:
            if self._read(record for record, _ in self._reader.poll(0.5)):
                progress = time.monotonic()
            elif time.monotonic() - progress > reread_after:
                self._reader.close()
                self._reader = TopicReader(self.bootstrap, self.settings["recommendations_topic"])
                found = self._read(self._reader.records(timeout=3.0))
                warnings.warn(f"no recommendation for {reread_after:.0f} s with events unanswered: a fresh reader found {found} new messages", stacklevel=2)
                progress = time.monotonic()
        return self.recommendations

    def _read(self, records) -> int:
        """Add records not seen before (by partition and offset); how many were new."""
        new = 0
        for record in records:
            if (record.partition, record.offset) not in self._positions:
                self._positions.add((record.partition, record.offset))
                rec = Recommendation.model_validate_json(record.value)
                self.recommendations[rec.event_id].append(rec)
                new += 1
        return new

    def dead_letters(self, count: int, timeout: float = 60.0):
        letters = []
        with TopicReader(self.bootstrap, self.settings["dlq_topic"]) as reader:
            deadline = time.monotonic() + timeout
            while len(letters) < count and time.monotonic() < deadline:
                letters += list(reader.dead_letters(timeout=1.0))
        return letters

    def diagnose(self, events: list[dict]) -> str:
        """What a failed delivery test needs to tell a skip from a stall: where the unanswered events sit in
        the input topic, which input offsets no recommendation answers, the group's committed offsets, and
        the counters of the workers still running."""
        missing = {e["event_id"] for e in events} - self.recommendations.keys()
        where: dict[str, tuple[int, int]] = {}
        ends: dict[int, int] = defaultdict(int)  # input records per partition
        with TopicReader(self.bootstrap, self.settings["interactions_topic"]) as reader:
            for record in reader.records(timeout=3.0):
                ends[record.partition] = max(ends[record.partition], record.offset + 1)
                try:
                    event_id = json.loads(record.value).get("event_id")
                except (ValueError, TypeError, AttributeError):
                    continue
                if event_id in missing:
                    where[event_id] = (record.partition, record.offset)
        with TopicReader(self.bootstrap, self.settings["recommendations_topic"]) as reader:
            fresh = {rec.event_id for rec in reader.recommendations(timeout=3.0)}
        answered: dict[int, set[int]] = defaultdict(set)
        for recs in self.recommendations.values():
            for rec in recs:
                answered[rec.source.partition].add(rec.source.offset)
        lines = [
            f"{len(missing)} events unanswered; on the input topic: {sorted(where.items(), key=lambda kv: kv[1])[:40]}",
            (
                f"a fresh reader of the recommendations topic finds {len(fresh & missing)} of them answered"
                f" ({len(fresh)} events answered in all, {len(self.recommendations)} collected)"
            ),
        ]
        for partition in sorted(ends):
            holes = sorted(set(range(ends[partition])) - answered[partition])
            lines.append(f"input partition {partition}: {ends[partition]} records, offsets never answered: {_ranges(holes)}")
        try:
            lines.append("committed: " + ", ".join(f"{topic}:{partition}={offset}" for (topic, partition), offset in sorted(self.committed().items())))
        except Exception as error:  # a diagnosis must not hide the failure it explains
            lines.append(f"committed offsets unavailable: {error!r}")
        for worker in self.workers:
            if worker.process.poll() is None:
                try:
                    totals = {k: v for k, v in worker.metrics().items() if k.endswith("_total") and "events" in k}
                except Exception as error:
                    totals = {"unavailable": repr(error)}
                lines.append(f"{worker.log_path.name} counters: {totals}")
                lines.append(f"{worker.log_path.name} consumer: {_consumer_summary(worker)}")
        return "\n".join(lines)

    def committed(self) -> dict[tuple[str, int], int]:
        """The group's committed offsets, by (topic, partition)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            offsets = admin.list_group_offsets(self.settings["app_id"])[self.settings["app_id"]]
        finally:
            admin.close()
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

    def reset_input_offsets(self, offset: int) -> None:
        """Commit ``offset`` for every input partition in the group's name from outside the group, as
        ``kafka-consumer-groups --reset-offsets`` does (only while the group has no member)."""
        topic = self.settings["interactions_topic"]
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.settings["app_id"], enable_auto_commit=False)
        try:
            partitions = [TopicPartition(topic, p) for p in range(self.partitions)]
            consumer.assign(partitions)
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp in partitions})
        finally:
            consumer.close()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(60)}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self._reader is not None:
            self._reader.close()


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    spans: list[list[int]] = []
    for v in values:
        if spans and v == spans[-1][1] + 1:
            spans[-1][1] = v
        else:
            spans.append([v, v])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) or "none"


def _consumer_summary(worker) -> str:
    """GET /consumer in one line: flow flags, then per input partition where it is paused and its offsets."""
    status, body = worker.get("/consumer")
    if status != 200 or not isinstance(body, dict):
        return f"unavailable ({status})"
    flags = {k: v for k, v in body.items() if k != "partitions"}
    rows = [
        f"{p['topic']}:{p['partition']} " + " ".join(f"{k}={v}" for k, v in p.items() if k not in ("topic", "partition"))
        for p in body.get("partitions", [])
    ]
    return f"{flags}; " + "; ".join(rows)
