"""Repeated log records, summarised: what keeps a worker's log readable while its broker is away.

Without a broker, aiokafka's retry loops (100 ms back-off) log each failure again: a worker whose broker
stopped wrote 2,518 ERROR lines in 20 s (measured; four kinds: "Unable connect to node", "Unable to update
metadata", "Failed fetch messages", "Group Coordinator Request failed"). Raising the ``aiokafka`` logger's
level would hide real errors too. :class:`RepeatedRecordFilter` instead lets the first record of each kind
(logger, level, message template) through, holds back the same kind for ``window`` seconds and then logs
one line saying how many it held back, so every record is still accounted for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: the loggers whose repeats are summarised: the Kafka client's retry loops are the source of floods
QUIET_LOGGERS = ("aiokafka",)


@dataclass
class _Window:
    opened: float  # when the record that opened the window went through
    held: int = 0

#: a kind of record: (logger name, level, unformatted message)
_Kind = tuple[str, int, str]


class RepeatedRecordFilter(logging.Filter):
    """A logger filter: the first record of a kind passes, the same kind is held back for ``window`` seconds
    and counted, and the count is logged (by ``report``, default: this module's logger, which the filter does
    not watch) when the window is over, at the next record of that kind or at :meth:`flush`.

    A kind is (logger name, level, unformatted message), so "Unable connect to node with id %s" is one kind
    whatever the node. Thread-safe: aiokafka logs from Faust's consumer thread and from the event loop.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic, report: Callable[..., None] | None = None) -> None:
        super().__init__()
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.window = window
        self.clock = clock
        self.report = report or log.log
        self._windows: dict[_Kind, _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else str(record.msg)
        key = (record.name, record.levelno, template)
        now = self.clock()
        with self._lock:
            current = self._windows.get(key)
            if current is not None and now - current.opened < self.window:
                current.held += 1
                return False
            self._windows[key] = _Window(now)
        if current is not None and current.held:
            self._report(key, current, now)
        return True

    def flush(self, everything: bool = False) -> None:
        """Report the counts of windows that are over (every window with ``everything``, e.g. at the end) and
        forget them; call it now and then so that a flood that stops is still accounted for."""
        now = self.clock()
        with self._lock:
            over = [(key, w) for key, w in self._windows.items() if everything or now - w.opened >= self.window]
            for key, _ in over:
                del self._windows[key]
        for key, w in over:
            if w.held:
                self._report(key, w, now)

    def _report(self, key: _Kind, w: _Window, now: float) -> None:
        name, level, template = key
        self.report(
            level, "%s: %d more record(s) like %r in the last %.0f s, not shown (log_repeat_window)",
            name, w.held, template, now - w.opened,
        )


def summarise_repeats(window: float, prefixes: tuple[str, ...] = QUIET_LOGGERS) -> RepeatedRecordFilter | None:
    """Attach one :class:`RepeatedRecordFilter` to every logger under ``prefixes`` (a filter on a logger sees
    only the records logged to that logger, not its children's, so each gets it); ``None`` when ``window`` is
    0 (off). Import the packages first: their module loggers exist from then on."""
    if window == 0:
        return None
    repeated = RepeatedRecordFilter(window)
    for name in [*prefixes, *logging.Logger.manager.loggerDict]:
        if name in prefixes or name.startswith(tuple(p + "." for p in prefixes)):
            logging.getLogger(name).addFilter(repeated)
    return repeated
