"""Close a race in Faust's recovery that skips input events after a restart or rebalance.

At the end of a recovery Faust (faust-streaming 0.15) resumes the input ("stream") partitions, seeks them
to the committed offsets, and only then resumes its flow control, which *clears* every stream queue. When
the fetcher is already running (always after restoring a table from its changelog: it read the changelog),
events fetched between the resume and the clear are put into the queues and then thrown away, while the
consumer has already moved its read offset past them. The next fetched event then looks like a gap in the
partition (as compaction would leave), Faust counts the gap as acknowledged, and the commit moves past
events nobody processed: they are never seen again. Measured here: a worker restarted on an empty local
store skipped 60-100 events of a 400-event stream in 3 of 13 restarts
(tests/stream/test_worker.py, the ``*-without-local-state`` restart cases). This is the race of
faust-streaming issue #596 ("A race condition in recovery causes unrecoverable gaps in acked offsets"),
which in 0.15 turns from a stalled commit into a silent skip.

A second hole widens it: Faust pauses partitions only in its own bookkeeping and hands aiokafka the live
set of active partitions; when that set is momentarily empty, aiokafka's ``fetched_records`` takes an empty
set for "all partitions" and returns the prefetched records of paused partitions too, which Faust then
drops while aiokafka's position has moved past them. Before the final seek that is harmless (the seek
rewinds); after it, the events are gone. A first version of this fix held the partitions back in Faust's
bookkeeping only, and a restarted worker then consumed nothing at all: this is the likely reason (inferred
from the source, not traced).

The fix keeps Faust's sequence and pauses the stream partitions in aiokafka itself (where a pause keeps the
position and discards nothing) from before the seek until Faust has cleared its queues; they resume at the
committed offsets, which the first delivered events then carry.

A third hole: the rewind is a seek to the *committed* offsets, and a partition with nothing committed is
not sought at all (aiokafka's ``seek_to_committed`` skips it). Events Faust drops while its flow is stopped
(a ``getmany`` during recovery discards what it fetched and "seeks back to committed") are then gone
although no offset was ever committed past them. It happens whenever a worker is killed before its group's
first commit and its successor restores a table: measured with a worker killed after ~20 answered events
and ``commit_interval`` 1000 s (nothing committed), the restarted worker consumed nothing at all in 6 of 8
restarts (its fetch position already at the end of every input partition, Faust's read offsets empty), and
in CI it was the restart test's rare failure (3 in ~35 runs). So inside the same pause, partitions with no
committed offset go back to where an uncommitted group starts: the beginning (the app's
``consumer_auto_offset_reset`` is "earliest"), which is the committed position's meaning for them. The
seek skips a committed offset of 0 as well (``if offset and offset > 0``): Faust never commits 0, but a group
reset from outside (``kafka-consumer-groups --reset-offsets --to-earliest`` on a new topic) does, and the
restarted worker then consumed nothing in 3 of 7 runs of the restart test's reset-to-0 case. The beginning
is where offset 0 points (or, once retention has deleted it, where the out-of-range reset would go).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from aiokafka import TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery

log = logging.getLogger(__name__)


class StreamsAfterClearRecovery(Recovery):
    """Faust's recovery, with no stream record fetched between the seek to the committed offsets and the
    clearing of the stream queues."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        async with self._stream_partitions_paused_in_kafka():
            await super().on_recovery_completed(generation_id)

    async def _resume_streams(self, generation_id: int = 0) -> None:  # the path of apps without tables
        async with self._stream_partitions_paused_in_kafka():
            await super()._resume_streams(generation_id)

    @asynccontextmanager
    async def _stream_partitions_paused_in_kafka(self):
        consumer = self.app.consumer
        streams = [TopicPartition(tp.topic, tp.partition) for tp in consumer.assignment() if not self._is_changelog_tp(tp)]
        await _in_kafka_thread(consumer, streams, _pause)
        try:
            if self.app.conf.consumer_auto_offset_reset == "earliest":
                await _in_kafka_thread(consumer, streams, _uncommitted_to_beginning)
            yield
        finally:
            # Always: a rebalance that began meanwhile has paused them in Faust, and its own recovery seeks
            # again before they flow (and a new assignment starts unpaused in aiokafka anyway)
            await _in_kafka_thread(consumer, streams, _resume)
        log.info("stream partitions fetched again after the seek and the queue clearing: %s", ", ".join(f"{tp.topic}:{tp.partition}" for tp in streams))


async def _in_kafka_thread(consumer, partitions: list[TopicPartition], action) -> None:
    """Run ``action(kafka, partitions)`` on the thread that runs aiokafka's own consumer (a pause creates a
    future on that thread's loop), with the partitions it still has assigned."""
    thread = consumer._thread

    async def apply() -> None:
        kafka = thread._ensure_consumer()
        assigned = kafka.assignment()
        await action(kafka, [tp for tp in partitions if tp in assigned])

    if partitions:
        await thread.call_thread(apply)


async def _pause(kafka, partitions: list[TopicPartition]) -> None:
    kafka.pause(*partitions)


async def _resume(kafka, partitions: list[TopicPartition]) -> None:
    kafka.resume(*partitions)


async def _uncommitted_to_beginning(kafka, partitions: list[TopicPartition]) -> None:
    """Seek the partitions that have no committed offset, or 0 (both skipped by aiokafka's seek to the
    committed offsets), to the beginning of their log, and wait until the client knows that position
    (aiokafka resets the position of a paused partition as well)."""
    uncommitted = []
    for tp in partitions:
        committed = await kafka.committed(tp)
        if committed is None or committed <= 0:
            uncommitted.append(tp)
    if uncommitted:
        await kafka.seek_to_beginning(*uncommitted)
        log.info("no committed offset (or 0), reading from the beginning: %s", ", ".join(f"{tp.topic}:{tp.partition}" for tp in uncommitted))


class OrderedRecoveryTableManager(TableManager):
    """Faust's table manager with :class:`StreamsAfterClearRecovery` (set as the app's ``TableManager``)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = StreamsAfterClearRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
