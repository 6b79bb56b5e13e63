"""A deployment of real worker processes on the session's Kafka broker, with its own topics and group."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

from stream.process import WorkerProcess, settings_env
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

    def start_worker(self, name: str, port: int, ready_timeout: float = 120.0) -> WorkerProcess:
        env = settings_env(self.bootstrap, **self.settings, worker_data_dir=self.data_dir(name))
        # one log per start: with one shared file, logs() showed the restarted worker's tail once per start and
        # never the last lines of the worker it replaced, which a failed restart test needs to be diagnosed
        starts = sum(w.log_path.name.startswith(f"{name}.") for w in self.workers)
        worker = WorkerProcess(env, port, self.workdir / f"{name}.{starts}.log")
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

    def collect(self, event_ids: set[str], timeout: float = 90.0) -> dict[str, list[Recommendation]]:
        """Read recommendations until every event id in ``event_ids`` has one (or the timeout passes)."""
        if self._reader is None:
            self._reader = TopicReader(self.bootstrap, self.settings["recommendations_topic"])
        deadline = time.monotonic() + timeout
        while not event_ids <= self.recommendations.keys() and time.monotonic() < deadline:
            for record, _ in self._reader.poll(0.5):
                rec = Recommendation.model_validate_json(record.value)
                self.recommendations[rec.event_id].append(rec)
        return self.recommendations

    def dead_letters(self, count: int, timeout: float = 60.0):
        letters = []
        with TopicReader(self.bootstrap, self.settings["dlq_topic"]) as reader:
            deadline = time.monotonic() + timeout
            while len(letters) < count and time.monotonic() < deadline:
                letters += list(reader.dead_letters(timeout=1.0))
        return letters

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log_tail(40)}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self._reader is not None:
            self._reader.close()
