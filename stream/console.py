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

import gzip
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stream.producer import EventProducer, TopicReader
from stream.schemas import DeadLetter, InteractionEvent, Limits, Reason, Recommendation, check_event

#: Sent events whose delivery is confirmed together (bounds the pending futures a large file holds).
CONFIRM_EVERY = 5000
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


@dataclass
class Published:
    sent: list[Sent]
    refused: list[Refused]


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
    """Non-blank lines of a JSON-lines file (``-``: standard input; ``.gz``: gzip), with 1-based numbers."""
    if str(path) == "-":
        stream = sys.stdin.buffer
    elif str(path).endswith(".gz"):
        stream = gzip.open(path, "rb")
    else:
        stream = open(path, "rb")  # noqa: SIM115 (closed below; stdin is not ours to close)
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line.strip()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def publish(producer: EventProducer, lines: Iterable[tuple[int, bytes]], limits: Limits,
            on_progress: Callable[[int], None] = lambda n: None, delivery_timeout: float = 30.0) -> Published:
    """Check each numbered raw event with the worker's rules, publish the valid ones in their normal form
    (:meth:`EventProducer.encode`) keyed by user id, and wait until Kafka has acknowledged each (its
    position) or refused it. The size limit applies to what is published, not to the line: a line's extra
    fields (a review's text, say) are dropped, not sent."""
    published = Published([], [])
    pending: list[tuple[int, InteractionEvent, Any]] = []
    unbounded = limits.model_copy(update={"max_event_bytes": sys.maxsize})
    for number, raw in lines:
        checked = check_event(raw, unbounded)
        if not isinstance(checked, tuple) and len(value := producer.encode(checked)) > limits.max_event_bytes:
            checked = Reason.OVERSIZE, f"{len(value)} bytes > max_event_bytes={limits.max_event_bytes}"
        if isinstance(checked, tuple):
            reason, detail = checked
            published.refused.append(Refused(number, reason.value, detail))
            continue
        pending.append((number, checked, producer.send_raw(checked.user_id.encode(), value)))
        if len(pending) >= CONFIRM_EVERY:
            _confirm(producer, pending, published, delivery_timeout, on_progress)
    _confirm(producer, pending, published, delivery_timeout, on_progress)
    return published


def _confirm(producer, pending, published: Published, timeout: float, on_progress) -> None:
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout)
    except KafkaError:
        pass  # each future below says which events did not make it
    for number, event, future in pending:
        try:
            meta = future.get(timeout=timeout)
        except KafkaError as error:
            published.refused.append(Refused(number, "delivery", f"{type(error).__name__}: {error}"))
        else:
            published.sent.append(Sent(number, event, Position(meta.topic, meta.partition, meta.offset)))
    on_progress(len(pending))
    pending.clear()


def await_answers(readers: list[TopicReader], sent: list[Sent], idle_timeout: float) -> dict[Position, Recommendation | DeadLetter]:
    """The recommendation or dead letter of each sent event, read from ``readers`` (the recommendations
    and DLQ topics, positioned before the events went out), until every event has one or ``idle_timeout``
    seconds pass without a new one. Events without an answer are absent from the result."""
    waiting = {s.position for s in sent}
    answers: dict[Position, Recommendation | DeadLetter] = {}
    idle_since = time.monotonic()
    while waiting and time.monotonic() - idle_since < idle_timeout:
        for reader in readers:
            for record, _ in reader.poll(0.1):
                answer = _answer(record)
                if answer is None:
                    continue
                position = answer_position(answer)
                if position in waiting:  # the first answer counts; at-least-once may deliver a second
                    waiting.discard(position)
                    answers[position] = answer
                    idle_since = time.monotonic()
    return answers


def answer_position(answer: Recommendation | DeadLetter) -> Position:
    """The position of the event an answer is about."""
    if isinstance(answer, Recommendation):
        return Position(answer.source.topic, answer.source.partition, answer.source.offset)
    return Position(answer.topic, answer.partition, answer.offset)


def _answer(record) -> Recommendation | DeadLetter | None:
    """A recommendations or DLQ record read back; None for a record of neither shape (a foreign producer's)."""
    try:
        if record.headers and any(key == "reason" for key, _ in record.headers):
            return DeadLetter.from_message(record.value, record.headers)
        return Recommendation.model_validate_json(record.value or b"")
    except (ValidationError, KeyError, ValueError):
        return None


# ---- formats ---------------------------------------------------------------------------------------------

def _when(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


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
    more = f" ... ({len(letter.raw)} bytes)" if len(letter.raw) > RAW_SHOWN else ""
    return (f"dead letter: {letter.reason.value}: {letter.detail}\n"
            f"  event {letter.topic}/{letter.partition}/{letter.offset}, rejected at {_when(letter.rejected_at)}\n"
            f"  raw: {raw!r}{more}")


def dead_letter_json(letter: DeadLetter) -> dict:
    return {
        "reason": letter.reason.value, "detail": letter.detail, "topic": letter.topic, "partition": letter.partition,
        "offset": letter.offset, "rejected_at": letter.rejected_at, "raw": letter.raw.decode("utf-8", "backslashreplace"),
    }


def format_record(kind: str, record, as_json: bool) -> str:
    """One record of a followed topic: ``kind`` is recommendations, dlq or interactions (raw events)."""
    where = f"{record.topic}/{record.partition}/{record.offset}"
    value = record.value or b""
    try:
        if kind == "recommendations":
            rec = Recommendation.model_validate_json(value)
            return value.decode() if as_json else format_recommendation(rec)
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
        return text
    key = record.key.decode("utf-8", "backslashreplace") if record.key is not None else "(no key)"
    return f"{where} {key}: {text}"


def follow(reader: TopicReader, kind: str, echo: Callable[[str], None], user: str | None = None,
           count: int | None = None, idle_timeout: float | None = None, as_json: bool = False) -> int:
    """Print the records of ``reader``'s topic (only ``user``'s: records are keyed by user id) until ``count``
    were printed or ``idle_timeout`` seconds pass without one (None: until interrupted). Returns how many."""
    key = user.encode() if user is not None else None
    printed = 0
    idle_since = time.monotonic()
    while count is None or printed < count:
        if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
            break
        for record, _ in reader.poll(0.2):
            if key is not None and record.key != key:
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
    return json.dumps(body)


def refused_json(refused: Refused) -> str:
    return json.dumps({"line": refused.line, "outcome": "refused", "reason": refused.reason, "detail": refused.detail})


def describe_refused(refused: Refused, source: str | None) -> str:
    """``source``: the file the event came from (None: the command line's options)."""
    where = f"{source} line {refused.line}" if source is not None else "the event"
    if refused.reason == "delivery":
        return f"{where}: not delivered: {refused.detail}"
    return f"{where}: refused, {refused.reason}: {refused.detail} (the worker would dead-letter it)"

