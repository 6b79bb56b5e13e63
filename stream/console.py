"""Kafka from a terminal: ``difflsrec send`` publishes interaction events (from options, or a JSON-lines file)
and can wait for what the worker made of each; ``difflsrec follow`` prints a topic's records as a person reads
them, or as JSON lines for a script.

Events are checked with the worker's own rules (:func:`stream.schemas.check_event` with the worker settings'
limits) before they leave, so a bad line is refused here, with its line number and the reason the worker would
have dead-lettered it with, instead of turning up later in the DLQ; each event is keyed by its user id, as
the worker requires. An answer is matched to its event by the event's position (topic, partition, offset),
which every recommendation and dead letter carries: no event id is needed.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import queue
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stream.producer import EventProducer, TopicReader
from stream.schemas import DeadLetter, InteractionEvent, Limits, Recommendation, check_event, oversize

#: Sent events whose delivery is confirmed together (bounds the pending futures a large file holds), and the
#: seconds of a quiet input after which pending events are confirmed anyway (each outcome shows as it happens).
CONFIRM_EVERY = 5000
CONFIRM_AFTER = 0.2
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
#: Bytes of a rejected record shown by the human-readable format.
RAW_SHOWN = 200


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass
class Sent:
    line: int
    event: InteractionEvent
    position: Position


@dataclass
class Refused:
    line: int
    reason: str  # a dead-letter Reason's value, or "delivery" when Kafka did not take the event
    detail: str


def event_from_options(user: str, item: str, timestamp: str | None = None, event_id: str | None = None,
                       event_type: str | None = None, rating: float | None = None, now: float | None = None) -> bytes:
    """One event as the JSON a producer would write. ``timestamp`` as the user typed it (epoch seconds or
    milliseconds, or ISO-8601; default now); ``event_id`` defaults to a fresh ``cli-...`` id."""
    body: dict[str, Any] = {
        "user_id": user,
        "item_id": item,
        "timestamp": timestamp if timestamp is not None else (time.time() if now is None else now),
        "event_id": event_id or f"cli-{uuid.uuid4().hex[:16]}",
    }
    if event_type is not None:
        body["event_type"] = event_type
    if rating is not None:
        body["rating"] = rating
    return json.dumps(body).encode()


def numbered_lines(path: Path | str) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a JSON-lines file with 1-based numbers: ``-`` is standard input, gzip is recognised by
    its magic bytes (any name, stdin too), a UTF-8 byte-order mark is dropped. A truncated or corrupt gzip
    stream ends with a ``ValueError`` that names the file and the last line read."""
    name = "stdin" if str(path) == "-" else str(path)
    # stdin through a reader of our own (closefd=False): the thread that reads it may still be blocked in a read
    # when the interpreter exits, and Python aborts ("could not acquire lock for <stdin>") if that is sys.stdin's
    raw = open(sys.stdin.fileno(), "rb", closefd=False) if str(path) == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    number = 0
    try:
        stream = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == GZIP_MAGIC else raw  # open(..., "rb") buffers: peek
        for number, line in enumerate(stream, 1):
            line = line.strip()
            if number == 1 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM):]
            if line:
                yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(f"{name}: unreadable gzip after line {number}: {error}") from error
    finally:
        raw.close()


@dataclass
class Tally:
    """What a :class:`Sender` has done so far (the summary line)."""

    last_line: int = 0  # of the last event line read
    sent: int = 0
    refused: int = 0
    undelivered: int = 0
    recommendations: int = 0
    dead_letters: int = 0
    unanswered: int = 0


class Sender:
    """Checks each numbered raw event with the worker's rules and publishes the valid ones in their normal form
    (:meth:`EventProducer.encode`) keyed by user id, reporting every outcome as soon as it is known: refused
    (with the worker's reason), not delivered (Kafka's error), sent (its position) and, with ``readers`` (the
    recommendations and DLQ topics, positioned before the first event went out), the worker's answer or its
    absence. Only the events not yet confirmed or answered are held, so a file of any size streams through.

    The size limit applies to what is published, not to the line: a line's extra fields (a review's text,
    say) are dropped, not sent."""

    def __init__(self, producer: EventProducer, limits: Limits, *, on_refused: Callable[[Refused], None],
                 on_sent: Callable[[Sent], None], on_answer: Callable[[Sent, Recommendation | DeadLetter | None], None],
                 readers: list[TopicReader] | None = None, confirm_every: int = CONFIRM_EVERY, confirm_after: float = CONFIRM_AFTER):
        self.producer, self.limits, self.readers = producer, limits, readers or []
        self.on_refused, self.on_sent, self.on_answer = on_refused, on_sent, on_answer
        self.confirm_every, self.confirm_after = confirm_every, confirm_after
        self.tally = Tally()
        self._pending: deque[tuple[int, InteractionEvent, Any]] = deque()
        self._waiting: dict[Position, Sent] = {}  # sent, not yet answered (with readers)

    def send(self, lines: Iterable[tuple[int, bytes]]) -> None:
        """Publish every line of ``lines`` (read by a thread of its own, so that a quiet input, a person typing
        or a ``tail -f``, still has its last events confirmed and answered within ``confirm_after`` seconds)."""
        for item in _read_ahead(lines, self.confirm_after):
            if item is None:  # the input is quiet: report what is pending instead of waiting for more
                self.confirm()
                if self._waiting:
                    self._collect(0.0)
                continue
            number, raw = item
            self.tally.last_line = number
            checked = check_event(raw, self.limits, check_size=False)
            if not isinstance(checked, tuple):
                value = self.producer.encode(checked)
                checked = oversize(value, self.limits) or checked
            if isinstance(checked, tuple):
                self.tally.refused += 1
                self.on_refused(Refused(number, checked[0].value, checked[1]))
                continue
            self._pending.append((number, checked, self.producer.send_raw(checked.user_id.encode(), value)))
            if len(self._pending) >= self.confirm_every:
                self.confirm()
                if self._waiting:
                    self._collect(0.0)

    def confirm(self) -> None:
        """Wait until Kafka has taken or refused every event published so far. ``flush`` returns when each
        record is delivered or has failed for good (the producer's ``delivery_timeout_ms``, 120 s by default):
        an outcome is never guessed from a shorter wait, which once reported a delivered event as lost."""
        from kafka.errors import KafkaError

        if not self._pending:
            return
        self.producer.flush()
        while self._pending:
            # taken off before it is reported: a Ctrl-C during a report must not report it twice
            number, event, future = self._pending.popleft()
            try:
                meta = future.get(timeout=0)  # resolved by the flush above
            except KafkaError as error:
                self.tally.undelivered += 1
                self.on_refused(Refused(number, "delivery", str(error) or type(error).__name__))
                continue
            sent = Sent(number, event, Position(meta.topic, meta.partition, meta.offset))
            self.tally.sent += 1
            if self.readers:
                self._waiting[sent.position] = sent
            else:
                self.on_sent(sent)

    def finish(self, idle_timeout: float) -> None:
        """Confirm the rest and, with readers, wait for the answers still missing until every event has one
        or ``idle_timeout`` seconds pass without a new one; the rest are reported unanswered."""
        self.confirm()
        idle_since = time.monotonic()
        while self._waiting and time.monotonic() - idle_since < idle_timeout:
            if self._collect(0.1):
                idle_since = time.monotonic()
        self.give_up()

    def give_up(self) -> None:
        """Report every event still waiting for an answer as unanswered."""
        for sent in self._waiting.values():
            self.tally.unanswered += 1
            self.on_answer(sent, None)
        self._waiting.clear()

    def _collect(self, timeout: float) -> int:
        """Answers that arrived within ``timeout`` seconds, reported; how many matched a waiting event."""
        matched = 0
        for reader in self.readers:
            for record, _ in reader.poll(timeout):
                answer = _answer(record)
                sent = self._waiting.pop(answer_position(answer), None) if answer is not None else None
                if sent is None:
                    continue  # another producer's event, or a second answer (at-least-once redelivery)
                matched += 1
                if isinstance(answer, DeadLetter):
                    self.tally.dead_letters += 1
                else:
                    self.tally.recommendations += 1
                self.on_answer(sent, answer)
        return matched


_END = object()


def _read_ahead(lines: Iterable[tuple[int, bytes]], quiet: float, depth: int = 10_000) -> Iterator[tuple[int, bytes] | None]:
    """``lines``, read by a daemon thread into a bounded queue; ``None`` whenever ``quiet`` seconds pass without a
    line. An error reading the input is raised here, after the lines before it."""
    q: queue.Queue = queue.Queue(maxsize=depth)

    def read() -> None:
        try:
            for item in lines:
                q.put(item)
            q.put(_END)
        except BaseException as error:  # handed to the consumer, which raises it in its own thread
            q.put(error)

    threading.Thread(target=read, name="send-input", daemon=True).start()
    while True:
        try:
            item = q.get(timeout=quiet)
        except queue.Empty:
            yield None
            continue
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def answer_position(answer: Recommendation | DeadLetter) -> Position:
    """The position of the event an answer is about."""
    if isinstance(answer, Recommendation):
        return Position(answer.source.topic, answer.source.partition, answer.source.offset)
    return Position(answer.topic, answer.partition, answer.offset)


def _answer(record) -> Recommendation | DeadLetter | None:
    """A recommendations or DLQ record read back; None for a record of neither shape (a foreign producer's)."""
    try:
        if record.headers and any(key == "reason" for key, _ in record.headers):
            return DeadLetter.from_message(record.value, record.headers, record.key)
        return Recommendation.model_validate_json(record.value or b"")
    except (ValidationError, KeyError, ValueError):
        return None


# ---- formats ---------------------------------------------------------------------------------------------

def _when(epoch_seconds: float) -> str:
    """UTC time of an epoch value; the number itself when it is no time a calendar has (a foreign record's)."""
    try:
        return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError):
        return f"epoch {epoch_seconds!r}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN or infinity


def format_recommendation(rec: Recommendation) -> str:
    """A header line (whose list, for which event, from which model, how long after the event) and one line
    per item."""
    latency_ms = rec.emit_time * 1000.0 - rec.source.timestamp_ms
    notes = [f"model {rec.model_version}", rec.strategy, f"{latency_ms:.0f} ms after the event was produced"]
    if rec.as_of_offset != rec.source.offset:
        notes.append(f"list as of the user's later event {rec.as_of_event_id or rec.as_of_offset} in the same batch")
    if rec.replay:
        notes.append("redelivered event, state not advanced again")
    event = f"event {rec.event_id} " if rec.event_id else "event "
    head = f"{rec.user_id}: {len(rec.items)} items after {event}at {_when(rec.event_time)} ({rec.source.topic}/{rec.source.partition}/{rec.source.offset}); {', '.join(notes)}"
    width = max((len(item.item_id) for item in rec.items), default=0)
    return "\n".join([head] + [f"  {rank:>3}. {item.item_id:<{width}}  {item.score:.4f}" for rank, item in enumerate(rec.items, 1)])


def format_dead_letter(letter: DeadLetter) -> str:
    raw = letter.raw[:RAW_SHOWN]
    more = f" ... ({letter.raw_size or len(letter.raw)} bytes)" if len(letter.raw) > RAW_SHOWN else ""
    return (f"dead letter: {letter.reason.value}: {letter.detail}\n"
            f"  event {letter.topic}/{letter.partition}/{letter.offset}, rejected at {_when(letter.rejected_at)}\n"
            f"  raw: {raw!r}{more}")


def dead_letter_json(letter: DeadLetter) -> dict:
    return {
        "reason": letter.reason.value, "detail": letter.detail, "topic": letter.topic, "partition": letter.partition,
        "offset": letter.offset, "rejected_at": _finite(letter.rejected_at), "raw": letter.raw.decode("utf-8", "backslashreplace"),
        "raw_base64": base64.b64encode(letter.raw).decode(),  # exact, where "raw" shows a byte and a literal "\\xff" alike
        "raw_size": letter.raw_size or len(letter.raw),  # larger than raw when the worker kept only the first bytes
    }


def format_record(kind: str, record, as_json: bool) -> str:
    """One record of a followed topic: ``kind`` is recommendations, dlq or interactions (raw events)."""
    where = f"{record.topic}/{record.partition}/{record.offset}"
    value = record.value or b""
    try:
        if kind == "recommendations":
            rec = Recommendation.model_validate_json(value)
            return _one_line_json(value) if as_json else format_recommendation(rec)
        if kind == "dlq":
            letter = DeadLetter.from_message(value, record.headers)
            return json.dumps(dead_letter_json(letter)) if as_json else format_dead_letter(letter)
    except (ValidationError, KeyError, ValueError) as error:
        # not this topic's message shape (a foreign producer, another version): shown, never dropped
        detail = str(error).splitlines()[0]
        if as_json:
            return json.dumps({"unreadable": where, "error": detail, "value": value.decode("utf-8", "backslashreplace")})
        return f"{where}: unreadable as {kind} ({detail}): {value[:RAW_SHOWN]!r}"
    text = value.decode("utf-8", "backslashreplace")
    if as_json:
        try:
            return _one_line_json(value)
        except ValueError:  # a malformed event: still one JSON object per line
            return json.dumps({"unreadable": where, "error": "not JSON", "value": text}, ensure_ascii=False)
    key = record.key.decode("utf-8", "backslashreplace") if record.key is not None else "(no key)"
    return f"{where} {key}: {text}"


def _one_line_json(value: bytes) -> str:
    """A JSON message as one line (it may have been written across several); ValueError when it is not JSON."""
    return json.dumps(json.loads(value), ensure_ascii=False, separators=(",", ":"))


def _user_of_raw_event(value: bytes) -> str | None:
    """The ``user_id`` inside a rejected event's bytes, when there is one to read."""
    try:
        body = json.loads(value)
    except ValueError:
        return None
    user = body.get("user_id") if isinstance(body, dict) else None
    return str(user) if isinstance(user, str | int) and not isinstance(user, bool) else None


def follow(reader: TopicReader, kind: str, echo: Callable[[str], None], user: str | None = None,
           count: int | None = None, idle_timeout: float | None = None, as_json: bool = False) -> int:
    """Print the records of ``reader``'s topic (only ``user``'s: records are keyed by user id; a dead letter also
    when the rejected event names the user, whatever its key) until ``count`` were printed or ``idle_timeout``
    seconds pass without one (None: until interrupted). Returns how many."""
    key = user.encode() if user is not None else None
    printed = 0
    idle_since = time.monotonic()
    while count is None or printed < count:
        if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
            break
        for record, _ in reader.poll(0.2):
            if key is not None and record.key != key and not (kind == "dlq" and _user_of_raw_event(record.value or b"") == user):
                continue
            echo(format_record(kind, record, as_json))
            printed += 1
            idle_since = time.monotonic()
            if count is not None and printed >= count:
                break
    return printed


def outcome_json(sent: Sent, answer: Recommendation | DeadLetter | None, waited: bool) -> str:
    """``send --json``: one object per published event."""
    body: dict[str, Any] = {"line": sent.line, "user_id": sent.event.user_id, "item_id": sent.event.item_id,
                            "event_id": sent.event.event_id, "topic": sent.position.topic,
                            "partition": sent.position.partition, "offset": sent.position.offset}
    if not waited:
        body["outcome"] = "sent"
    elif isinstance(answer, Recommendation):
        body["outcome"], body["recommendation"] = "recommendation", json.loads(answer.model_dump_json())
    elif isinstance(answer, DeadLetter):
        body["outcome"], body["dead_letter"] = "dead_letter", dead_letter_json(answer)
    else:
        body["outcome"] = "no_answer"
    return json.dumps(body, ensure_ascii=False)


def refused_json(refused: Refused) -> str:
    return json.dumps({"line": refused.line, "outcome": "refused", "reason": refused.reason, "detail": refused.detail}, ensure_ascii=False)


def describe_refused(refused: Refused, source: str | None) -> str:
    """``source``: the file the event came from (None: the command line's options)."""
    where = f"{'stdin' if source == '-' else source} line {refused.line}" if source is not None else "the event"
    if refused.reason == "delivery":
        return f"{where}: not delivered: {refused.detail}"
    return f"{where}: refused, {refused.reason}: {refused.detail} (the worker would dead-letter it)"

