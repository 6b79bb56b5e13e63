"""Parsing raw interaction bytes: every rejection reason, timestamp formats, and the message schemas."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from stream.schemas import DLQ_MAX_DETAIL_CHARS, DLQ_MAX_KEY_BYTES, DLQ_MAX_VALUE_BYTES, DeadLetter, InteractionEvent, Limits, Reason, Recommendation, dump_recommendation, parse_event

NOW = 1_800_000_000.0
LIMITS = Limits(max_event_bytes=512, min_event_time=631_152_000, max_future_skew=3600)


def _raw(**fields) -> bytes:
    return json.dumps({"user_id": "u1", "item_id": "i1", "timestamp": 1_000_000_000, **fields}).encode()


def _parse(raw: bytes, key: bytes | None = b"u1"):
    return parse_event(key, raw, LIMITS, now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "seconds"),
    [
        (1_000_000_000, 1_000_000_000.0),  # epoch seconds
        (1_000_000_000_500, 1_000_000_000.5),  # epoch milliseconds, detected by magnitude
        (1_000_000_000.25, 1_000_000_000.25),
        ("1000000000", 1_000_000_000.0),  # numeric string
        ("2001-09-09T01:46:40Z", 1_000_000_000.0),  # ISO-8601, UTC
        ("2001-09-09T03:46:40+02:00", 1_000_000_000.0),  # ISO-8601 with an offset
        ("2001-09-09T01:46:40", 1_000_000_000.0),  # naive ISO-8601 is UTC
    ],
)
def test_timestamp_formats(timestamp, seconds):
    event = _parse(_raw(timestamp=timestamp))
    assert isinstance(event, InteractionEvent) and event.timestamp == pytest.approx(seconds)


def test_valid_event_with_integer_ids_and_optional_fields():
    event = _parse(json.dumps({"user_id": 7, "item_id": 1193, "timestamp": 978300760, "event_id": 3, "event_type": "rating", "rating": 4, "extra": [1]}).encode(), key=b"7")
    assert (event.user_id, event.item_id, event.event_id, event.rating) == ("7", "1193", "3", 4.0)


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (b"x" * 600, b"u1", Reason.OVERSIZE),
        (b"not json", b"u1", Reason.NOT_JSON),
        (b"\xff\xfe\x00", b"u1", Reason.NOT_JSON),
        (b"", b"u1", Reason.NOT_JSON),
        (b'{"user_id": "u1", "item_id": "i1"', b"u1", Reason.NOT_JSON),  # truncated
        (b"[1, 2]", b"u1", Reason.WRONG_TYPE),  # JSON, but not an object
        (json.dumps({"user_id": "u1", "timestamp": 1_000_000_000}).encode(), b"u1", Reason.MISSING_FIELD),
        (json.dumps({"item_id": "i1", "timestamp": 1_000_000_000}).encode(), b"u1", Reason.MISSING_FIELD),
        (json.dumps({"user_id": "u1", "item_id": "i1"}).encode(), b"u1", Reason.MISSING_FIELD),
        (_raw(item_id=["i1"]), b"u1", Reason.WRONG_TYPE),
        (_raw(item_id=1.5), b"u1", Reason.WRONG_TYPE),
        (_raw(item_id=True), b"u1", Reason.WRONG_TYPE),
        (_raw(timestamp=True), b"u1", Reason.WRONG_TYPE),
        (_raw(timestamp={"s": 1}), b"u1", Reason.WRONG_TYPE),
        (_raw(rating="high"), b"u1", Reason.WRONG_TYPE),
        (_raw(timestamp="yesterday"), b"u1", Reason.INVALID_VALUE),
        (b'{"user_id": "u1", "item_id": "i1", "timestamp": 1' + b"0" * 400 + b"}", b"u1", Reason.INVALID_VALUE),  # no float holds it
        (_raw(item_id=""), b"u1", Reason.INVALID_VALUE),
        (_raw(timestamp=-5), b"u1", Reason.TIMESTAMP_OUT_OF_RANGE),
        (_raw(timestamp=100), b"u1", Reason.TIMESTAMP_OUT_OF_RANGE),  # 1970: before min_event_time
        (_raw(timestamp=NOW + 7200), b"u1", Reason.TIMESTAMP_OUT_OF_RANGE),  # beyond the allowed clock skew
        (_raw(timestamp="3000-01-01T00:00:00Z"), b"u1", Reason.TIMESTAMP_OUT_OF_RANGE),
        (_raw(), b"u2", Reason.KEY_MISMATCH),  # would be served from another user's partition
        (_raw(), None, Reason.KEY_MISMATCH),
    ],
)
def test_rejections(raw, key, reason):
    result = _parse(raw, key)
    assert isinstance(result, tuple), result
    assert result[0] is reason, result


def test_dead_letter_headers_round_trip_keep_raw_bytes():
    letter = DeadLetter(reason=Reason.NOT_JSON, detail="bad", topic="interactions", partition=2, offset=41, rejected_at=NOW, raw=b"\xff\x00raw")
    back = DeadLetter.from_message(letter.raw, letter.headers())
    assert back == letter
    assert DeadLetter.from_message(letter.raw, dict(letter.headers())) == letter


def test_a_dead_letter_keeps_at_most_its_limit_of_the_raw_bytes_and_says_how_many_there_were():
    fields = dict(reason=Reason.OVERSIZE, detail="big", topic="interactions", partition=0, offset=1, rejected_at=NOW)
    small = DeadLetter.of(b"x" * 100, **fields)
    assert small.raw == b"x" * 100 and small.raw_size is None and "raw_size" not in dict(small.headers())
    big = DeadLetter.of(b"y" * (DLQ_MAX_VALUE_BYTES + 1), **fields)
    assert big.raw == b"y" * DLQ_MAX_VALUE_BYTES and big.raw_size == DLQ_MAX_VALUE_BYTES + 1
    assert DeadLetter.from_message(big.raw, big.headers()) == big


def test_a_dead_letter_bounds_its_key_and_detail_too():
    fields = dict(reason=Reason.KEY_MISMATCH, topic="interactions", partition=0, offset=1, rejected_at=NOW)
    letter = DeadLetter.of(b"{}", key=b"k" * (DLQ_MAX_KEY_BYTES + 5), detail="d" * (DLQ_MAX_DETAIL_CHARS + 5), **fields)
    assert letter.key == b"k" * DLQ_MAX_KEY_BYTES and letter.detail == "d" * DLQ_MAX_DETAIL_CHARS
    assert DeadLetter.of(b"{}", detail="short", **fields).key is None
    assert DeadLetter.from_message(letter.raw, letter.headers(), letter.key) == letter


def test_engine_dicts_serialise_to_the_recommendation_schema():
    fields = {
        "user_id": "u1", "items": [{"item_id": "i3", "score": 0.5}], "model_version": "v1", "event_id": None,
        "source": {"topic": "t", "partition": 0, "offset": 3, "timestamp_ms": 1}, "as_of_offset": 3, "as_of_event_id": None,
        "event_time": 1.0, "emit_time": 2.0, "strategy": "diffusion", "replay": False,
    }
    rec = Recommendation.model_validate_json(dump_recommendation(fields))
    assert rec.model_dump() == fields


def test_iso_timestamp_helper_agrees_with_datetime():
    stamp = datetime(2020, 5, 17, 12, 30, tzinfo=timezone.utc)
    assert _parse(_raw(timestamp=stamp.isoformat())).timestamp == stamp.timestamp()
