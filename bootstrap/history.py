"""Where retraining data comes from: history files (any loader format) and/or the interactions topic.

Both are normalised into one CSV (``user,item,timestamp`` in seconds) that the ordinary data preparation
reads, so k-core, ordering, dense ids and caching are exactly the offline ones. Times keep their sub-second
part (as the offline reader does): whole seconds before 2026-12-07 put same-second events of millisecond data
(Amazon 2023) in file order, and made two same-item events within a second one duplicate.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difflsrec.progress import progress
from model.data.formats import ReadOptions, read_interactions

log = logging.getLogger(__name__)


def seconds(t: float) -> int | float:
    """Epoch seconds as the history keeps them: an int when whole (so whole-second data writes as before),
    else the float with its fraction."""
    t = float(t)
    return int(t) if t.is_integer() else t


@dataclass
class HistoryTable:
    users: list[str]
    items: list[str]
    times: list[int | float]  # epoch seconds (see :func:`seconds`)

    def __len__(self) -> int:
        return len(self.times)

    def extend(self, other: "HistoryTable") -> None:
        self.users += other.users
        self.items += other.items
        self.times += other.times

    def time_quantile(self, q: float) -> int:
        return int(np.quantile(np.asarray(self.times, dtype=np.int64), q)) if self.times else 0

    def filter_time(self, start: int | None = None, end: int | None = None) -> "HistoryTable":
        """Interactions with start <= t < end."""
        keep = [i for i, t in enumerate(self.times) if (start is None or t >= start) and (end is None or t < end)]
        return HistoryTable([self.users[i] for i in keep], [self.items[i] for i in keep], [self.times[i] for i in keep])

    def write_csv(self, path: Path) -> str:
        """Writes the table; returns the time unit to read it back with: ``"auto"`` for whole seconds (written as
        they always were), ``"ms"`` when some time has a fraction (the readers keep no fraction of a second, so
        those are written as integer milliseconds)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        whole = all(float(t).is_integer() for t in self.times)
        times = self.times if whole else [round(float(t) * 1000) for t in self.times]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user_id", "item_id", "timestamp"])
            w.writerows(zip(self.users, self.items, times))
        return "auto" if whole else "ms"


def read_files(paths: list[Path], options: ReadOptions = ReadOptions()) -> HistoryTable:
    table, _ = read_interactions([Path(p) for p in paths], options)
    users = np.asarray(table.user_vocab, dtype=object)[table.users].tolist()
    items = np.asarray(table.item_vocab, dtype=object)[table.items].tolist()
    return HistoryTable(users, items, [seconds(t) for t in table.times.tolist()])


def read_topic(bootstrap_servers: str, topic: str, window_seconds: float | None = None, timeout: float = 30.0, limits=None) -> HistoryTable:
    """Every valid event of ``topic`` from the beginning up to the end offsets seen at the start (events
    arriving meanwhile are left for the next run), keeping those newer than ``window_seconds`` ago.
    Invalid events are skipped here: the worker already dead-letters them with the reason. ``limits``: the
    worker's (``WorkerSettings().event_limits()``, the default), so that what it served is what retraining reads."""
    from kafka import KafkaConsumer, TopicPartition

    from stream.schemas import InteractionEvent, parse_event
    from stream.settings import WorkerSettings, kafka_python_config

    limits = limits if limits is not None else WorkerSettings().event_limits()

    consumer = KafkaConsumer(**kafka_python_config(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000)))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            log.warning("topic %s does not exist or has no partitions", topic)
            return HistoryTable([], [], [])
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp: off for tp, off in end.items() if off > consumer.position(tp)}
        table, skipped = HistoryTable([], [], []), 0
        since = time.time() - window_seconds if window_seconds else None
        # an idle limit, not a total one: a large topic takes as long as it takes while records keep coming
        # (ML-1M's million events took over 30 s on a busy machine, so a total limit failed every period)
        last_progress = time.monotonic()
        with progress(total=sum(end[tp] - consumer.position(tp) for tp in remaining), unit="ev", desc=f"read {topic}", delay=2.0, leave=False) as bar:
            while remaining and time.monotonic() - last_progress < timeout:
                polled = consumer.poll(timeout_ms=500)
                if polled:
                    last_progress = time.monotonic()
                for tp, records in polled.items():
                    bar.update(len(records))
                    for rec in records:
                        if tp in remaining and rec.offset < end[tp]:
                            event = parse_event(rec.key, rec.value, limits)
                            if not isinstance(event, InteractionEvent):
                                skipped += 1
                            elif since is None or event.timestamp >= since:
                                table.users.append(event.user_id)
                                table.items.append(event.item_id)
                                table.times.append(seconds(event.timestamp))
                    if tp in remaining and consumer.position(tp) >= end[tp]:
                        del remaining[tp]
        if remaining:
            raise TimeoutError(f"reading {topic}: no record for {timeout}s before the end offsets: {remaining}")
        log.info("read %d events from topic %s (%d invalid skipped)", len(table), topic, skipped)
        return table
    finally:
        consumer.close()


def summary(table: HistoryTable) -> str:
    return json.dumps({"interactions": len(table), "users": len(set(table.users)), "items": len(set(table.items))})
