"""Repeated log records are held back and counted, never dropped unaccounted (stream/logs.py). The worker
with its broker gone: tests/stream/test_worker.py, test_a_worker_rides_out_a_broker_restart."""

from __future__ import annotations

import logging

import pytest

from stream.logs import RepeatedRecordFilter, summarise_repeats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watched():
    """A logger with the filter, the records that get through, the filter's reports, and the clock."""
    logger = logging.getLogger("test.repeated")
    logger.propagate = False
    passed: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            passed.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    reports: list[str] = []
    clock = Clock()
    repeated = RepeatedRecordFilter(30.0, clock=clock, report=lambda level, msg, *args: reports.append((level, msg % args)))
    logger.addFilter(repeated)
    yield logger, passed, reports, clock, repeated
    logger.removeFilter(repeated)
    logger.removeHandler(handler)


def test_the_first_record_of_a_kind_passes_and_its_repeats_are_counted(watched):
    logger, passed, reports, clock, _ = watched
    for node in range(5):
        logger.error("Unable connect to node with id %s: %s", node, "refused")
        clock.now += 1
    logger.warning("Unable connect to node with id %s: %s", 9, "refused")  # another level: another kind
    logger.error("Failed fetch messages from %s", 1)  # another message: another kind
    assert [r.getMessage() for r in passed] == [
        "Unable connect to node with id 0: refused",
        "Unable connect to node with id 9: refused",
        "Failed fetch messages from 1",
    ]
    assert reports == []  # the window is still open
    clock.now += 30  # the window is over: the next record of the kind passes, after the count of the last
    logger.error("Unable connect to node with id %s: %s", 7, "refused")
    expected = "test.repeated: 4 more record(s) like 'Unable connect to node with id %s: %s' in the last 35 s, not shown (log_repeat_window)"
    assert reports == [(logging.ERROR, expected)]
    assert passed[-1].getMessage() == "Unable connect to node with id 7: refused"


def test_flush_reports_a_flood_that_stopped(watched):
    logger, passed, reports, clock, repeated = watched
    for _ in range(3):
        logger.error("Group Coordinator Request failed: %s", "NodeNotReadyError")
    logger.error("alone")
    repeated.flush()
    assert reports == []  # windows still open
    clock.now += 31
    repeated.flush()  # the flood stopped: its count is still logged, once
    assert [level for level, _ in reports] == [logging.ERROR]
    assert "2 more record(s) like 'Group Coordinator Request failed: %s'" in reports[0][1]
    repeated.flush()
    logger.error("Group Coordinator Request failed: %s", "again")  # a new window: passes at once
    assert len(reports) == 1 and passed[-1].getMessage() == "Group Coordinator Request failed: again"


def test_flush_everything_reports_open_windows(watched):
    logger, _, reports, _, repeated = watched
    logger.error("x %s", 1)
    logger.error("x %s", 2)
    logger.error("y")  # nothing held back: nothing to report
    repeated.flush(everything=True)
    assert len(reports) == 1 and "1 more record(s) like 'x %s' in the last 0 s" in reports[0][1]


def test_summarise_repeats_watches_every_aiokafka_logger_and_can_be_off():
    import aiokafka  # noqa: F401  its module loggers exist from here on

    assert summarise_repeats(0) is None
    repeated = summarise_repeats(30.0)
    try:
        names = [n for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger) and n.startswith("aiokafka.")]
        assert "aiokafka.conn" in names and "aiokafka.consumer.fetcher" in names
        for name in ["aiokafka", *names]:
            assert repeated in logging.getLogger(name).filters, name
        assert repeated not in logging.getLogger("stream.logs").filters  # its own reports are never held back
    finally:
        for name in ["aiokafka", *names]:
            logging.getLogger(name).removeFilter(repeated)


def test_a_window_must_be_positive():
    with pytest.raises(ValueError, match="window must be positive"):
        RepeatedRecordFilter(0)
