"""The messages on the worker's topics, and the parsing of raw interaction bytes into an event or a reason
to reject it.

* ``interactions`` (in, key = user id): a JSON object, see :class:`InteractionEvent`.
* ``recommendations`` (out, key = user id): :class:`Recommendation` as JSON, one per input event.
* ``interactions.dlq`` (out, key = the original key): the rejected event's bytes exactly as received, with
  the reason and the source position in headers (:class:`DeadLetter`), since a payload that is not
  valid UTF-8/JSON cannot be embedded in JSON without re-encoding it. Past :data:`DLQ_MAX_VALUE_BYTES` (an
  oversize record near the broker's limit) only the first bytes are kept, with the ``raw_size`` header.
"""

from __future__ import annotations

import enum
import math
import time
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError, to_json

# Epoch values above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is March 1973.
MILLISECONDS_ABOVE = 1e11
MAX_ID_CHARS = 256
# The most bytes of a rejected record's value and key a dead letter keeps. A record near the broker's 1 MB
# limit (an oversize event) plus the headers was over the producer's max_request_size: the failed send
# stopped the worker, and every restart read the same record again and stopped too.
DLQ_MAX_VALUE_BYTES = 256 * 1024
DLQ_MAX_KEY_BYTES = 4 * MAX_ID_CHARS  # a longer key matches no user id (at most 256 characters of UTF-8)
DLQ_MAX_DETAIL_CHARS = 1000


class Reason(str, enum.Enum):
    """Why an event went to the dead-letter topic (the ``reason`` header; also a metrics label)."""

    OVERSIZE = "oversize"
    NOT_JSON = "not_json"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    KEY_MISMATCH = "key_mismatch"
    PROCESSING_ERROR = "processing_error"


def _epoch_seconds(value: object) -> float:
    """Epoch seconds or milliseconds (detected by magnitude), numeric strings, or ISO-8601 (naive = UTC)."""
    if isinstance(value, bool):  # a JSON true/false is not a time, although bool is an int in Python
        raise TypeError("timestamp must be a number or a string")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"timestamp {value[:40]!r} is neither epoch seconds/milliseconds nor ISO-8601") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    if not isinstance(value, int | float):
        raise TypeError("timestamp must be a number or a string")
    try:
        seconds = float(value)
    except OverflowError:  # a JSON integer past a float's range (10**400): raised out of the parser, it crashed the agent
        raise ValueError("timestamp must be finite") from None
    if not math.isfinite(seconds):
        raise ValueError("timestamp must be finite")
    return seconds / 1000.0 if abs(seconds) >= MILLISECONDS_ABOVE else seconds


class InteractionEvent(BaseModel):
    """One interaction. Ids may be JSON strings or integers (MovieLens ids are numbers); unknown extra
    fields are ignored so producers can add context without breaking the worker."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True, allow_inf_nan=False)

    user_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    item_id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    timestamp: float  # epoch seconds, UTC (normalised from seconds, milliseconds or ISO-8601)
    event_id: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)
    event_type: str | None = Field(None, max_length=64)
    rating: float | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _normalise_timestamp(cls, value: object) -> float:
        try:
            return _epoch_seconds(value)
        except TypeError as error:
            # re-raised as a pydantic error type ending in "_type", so the reason is "wrong_type"
            raise PydanticCustomError("timestamp_type", str(error)) from None

    @field_validator("user_id", "item_id", "event_id", mode="before")
    @classmethod
    def _ids_are_strings_or_integers(cls, value: object) -> object:
        # coerce_numbers_to_str would also turn 1.5 into "1.5"; an id that is a float is a producer bug
        if isinstance(value, float):
            raise PydanticCustomError("id_type", "ids must be strings or integers")
        return value


class RecommendedItem(BaseModel):
    item_id: str
    score: float


class EventSource(BaseModel):
    """Where the event that triggered a recommendation was read: with ``event_id`` it identifies duplicates."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the Kafka record's timestamp (when it was produced): latency is measured from it


class Recommendation(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    model_version: str
    event_id: str | None
    source: EventSource
    # The list reflects the user's state right after the event at this offset (same topic and partition):
    # the source event itself, or the user's last event in the same micro-batch when several of the user's
    # events arrived together and were served with one fused list (the worker's default; see engine.py).
    as_of_offset: int
    as_of_event_id: str | None
    event_time: float  # the interaction's own time, epoch seconds
    emit_time: float  # when the worker produced this list, epoch seconds
    strategy: str  # "diffusion": the model's fused user embedding; "popularity": no known item yet
    replay: bool = False  # the event had already been applied (at-least-once redelivery): state not advanced again


def dump_recommendation(fields: dict) -> bytes:
    """JSON of a dict with :class:`Recommendation`'s fields (the engine's output), without building the
    model: validating ~12 nested objects per message cost more than the whole model on CPU. The schema is
    held to by tests that read messages back with ``Recommendation.model_validate_json``."""
    return to_json(fields)


class DeadLetter(BaseModel):
    """A rejected event: the raw bytes travel as the message value, everything else as headers."""

    reason: Reason
    detail: str
    topic: str
    partition: int
    offset: int
    rejected_at: float
    raw: bytes = Field(repr=False)
    raw_size: int | None = None  # the value's size when ``raw`` holds only its first DLQ_MAX_VALUE_BYTES
    key: bytes | None = Field(default=None, repr=False)  # the record's key (the letter's own), its first DLQ_MAX_KEY_BYTES

    @classmethod
    def of(cls, value: bytes | None, *, key: bytes | None = None, detail: str, **fields) -> DeadLetter:
        """The letter of a rejected record, bounded so that it always fits the producer's limit (a letter
        over it stopped the worker, on every restart): the value's bytes unchanged, or the first
        :data:`DLQ_MAX_VALUE_BYTES` of a larger one (``raw_size`` says how large it was), the key's first
        :data:`DLQ_MAX_KEY_BYTES`, the detail's first :data:`DLQ_MAX_DETAIL_CHARS` characters."""
        value = value or b""
        bounded = dict(key=None if key is None else key[:DLQ_MAX_KEY_BYTES], detail=detail[:DLQ_MAX_DETAIL_CHARS], **fields)
        if len(value) <= DLQ_MAX_VALUE_BYTES:
            return cls(raw=value, **bounded)
        return cls(raw=value[:DLQ_MAX_VALUE_BYTES], raw_size=len(value), **bounded)

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("reason", self.reason.value.encode()),
            ("detail", self.detail.encode()),
            ("source", f"{self.topic}/{self.partition}/{self.offset}".encode()),
            ("rejected_at", repr(self.rejected_at).encode()),
        ]
        if self.raw_size is not None:
            headers.append(("raw_size", str(self.raw_size).encode()))
        return headers

    @classmethod
    def from_message(cls, value: bytes, headers, key: bytes | None = None) -> DeadLetter:
        """Read a DLQ record back (``headers`` as a list of (str, bytes) pairs or a dict)."""
        h = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (headers.items() if isinstance(headers, dict) else headers)}
        topic, partition, offset = h["source"].rsplit("/", 2)
        raw_size = int(h["raw_size"]) if h.get("raw_size") else None
        return cls(reason=Reason(h["reason"]), detail=h["detail"], topic=topic, partition=int(partition), offset=int(offset), rejected_at=float(h["rejected_at"]), raw=value or b"", raw_size=raw_size, key=key)


class Limits(BaseModel):
    """What :func:`parse_event` accepts beyond the schema (from the worker's settings)."""

    max_event_bytes: int = 4096
    min_event_time: float = 631_152_000.0
    max_future_skew: float = 86_400.0


def parse_event(key: bytes | None, raw: bytes | None, limits: Limits, now: float | None = None) -> InteractionEvent | tuple[Reason, str]:
    """Raw Kafka key and value -> a valid event, or ``(reason, detail)`` for the dead-letter topic."""
    event = check_event(raw, limits, now)
    if isinstance(event, tuple):
        return event
    # Kafka partitions by key, and the user's state lives in that key's partition: a record keyed
    # differently (or not at all) would be served from some other user's partition's state.
    if key is None or key != event.user_id.encode():
        return Reason.KEY_MISMATCH, f"message key {key[:40] if key else key!r} is not the user_id {event.user_id[:40]!r}"
    return event


def check_event(raw: bytes | None, limits: Limits, now: float | None = None, check_size: bool = True) -> InteractionEvent | tuple[Reason, str]:
    """Every check of :func:`parse_event` but the key's (``difflsrec send`` checks lines with it before it
    keys them itself): a valid event, or ``(reason, detail)``. ``check_size=False`` leaves the size to the
    caller (``send`` publishes a normal form of the line, and :func:`oversize` checks that instead)."""
    raw = raw or b""
    if check_size and (too_big := oversize(raw, limits)):
        return too_big
    try:
        event = InteractionEvent.model_validate_json(raw)
    except ValidationError as error:
        return _reason_of(error)
    now = time.time() if now is None else now
    if not limits.min_event_time <= event.timestamp <= now + limits.max_future_skew:
        return Reason.TIMESTAMP_OUT_OF_RANGE, f"timestamp {event.timestamp:.3f} outside [{limits.min_event_time:.0f}, now + {limits.max_future_skew:.0f}s]"
    return event


def oversize(value: bytes, limits: Limits) -> tuple[Reason, str] | None:
    """``(Reason.OVERSIZE, detail)`` when ``value`` is over the size limit, else None."""
    if len(value) > limits.max_event_bytes:
        return Reason.OVERSIZE, f"{len(value)} bytes > max_event_bytes={limits.max_event_bytes}"
    return None


def _reason_of(error: ValidationError) -> tuple[Reason, str]:
    first = error.errors(include_url=False, include_input=False)[0]
    kind, where = first["type"], ".".join(str(p) for p in first["loc"])
    detail = f"{where}: {first['msg']}" if where else first["msg"]
    if kind in ("json_invalid", "json_type"):
        return Reason.NOT_JSON, detail
    if kind == "missing":
        return Reason.MISSING_FIELD, detail
    if kind == "model_type" or kind.endswith("_type") or kind.endswith("_parsing"):  # e.g. "rating": "high"
        return Reason.WRONG_TYPE, detail
    return Reason.INVALID_VALUE, detail
