"""The user-state codec: exact round trips, compactness, and refusal of what it cannot read."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from stream.state import FORMAT_V1, StateFormatError, UserState, decode_state, encode_state


def _state(history_len: int = 200, d: int = 64) -> UserState:
    rng = np.random.default_rng(0)
    return UserState(
        model_version="20260101T000000-000001",
        h=rng.standard_normal(d).astype(np.float32),
        window=np.array([5, 9, 2, 7], np.int32),
        window_intervals=np.array([0.0, 0.25, 0.5, 1.0], np.float32),
        window_freqs=np.array([3, 1, 8, 2], np.int32),
        history=[f"item-{i}" for i in range(history_len)],
        history_times=1e9 + np.arange(history_len, dtype=np.float64) * 61.5,
        history_dense=np.arange(history_len, dtype=np.int32) % 40,
        last_ts=1e9 + 61.5 * (history_len - 1),
        event_count=1234,
        unknown_count=3,
        offsets={"interactions/3": 987654321},
        recent_event_ids=[f"e{i}" for i in range(16)],
        latest=b'{"user_id":"u"}',
    )


def _assert_equal(a: UserState, b: UserState) -> None:
    for name in UserState.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        else:
            assert x == y, name


def test_round_trip_is_exact():
    state = _state()
    _assert_equal(decode_state(encode_state(state)), state)


def test_new_user_state_round_trips():
    empty = UserState(model_version="v")
    back = decode_state(encode_state(empty))
    _assert_equal(back, empty)
    assert back.h is None and back.last_ts is None and back.latest is None


def test_values_are_compact_binary():
    state = _state(history_len=200, d=64)
    value = encode_state(state)
    assert value[0] == FORMAT_V1
    # arrays are raw little-endian bytes (h: 64 float32 = 256 bytes), not decimal text
    assert state.h.astype("<f4").tobytes() in value and state.history_times.astype("<f8").tobytes() in value
    as_json = json.dumps({"h": state.h.tolist(), "history": state.history, "times": state.history_times.tolist(), "dense": state.history_dense.tolist()})
    assert len(value) < 0.7 * len(as_json)
    # nothing but the arrays' bytes, the strings and a little msgpack framing
    arrays = sum(a.nbytes for a in (state.h, state.window, state.window_intervals, state.window_freqs, state.history_times, state.history_dense))
    strings = sum(len(x) + 1 for x in state.history + state.recent_event_ids) + len(state.model_version) + len(state.latest)
    assert len(value) < arrays + strings + 120


def test_unknown_format_and_corrupt_values_are_refused():
    value = encode_state(_state())
    with pytest.raises(StateFormatError, match="format 2"):
        decode_state(bytes([2]) + value[1:])
    with pytest.raises(StateFormatError):
        decode_state(b"")
    with pytest.raises(StateFormatError):
        decode_state(value[:40])
    body = msgpack.unpackb(value[1:])
    body["hd"] = body["hd"][:-4]  # history arrays of different lengths
    with pytest.raises(StateFormatError, match="history"):
        decode_state(bytes([FORMAT_V1]) + msgpack.packb(body, use_bin_type=True))


def test_decoded_arrays_are_read_only_so_nothing_mutates_a_stored_state():
    back = decode_state(encode_state(_state()))
    with pytest.raises(ValueError):
        back.h[0] = 1.0
    copy = back.copy()
    copy.history.append("x")
    copy.offsets["other/0"] = 1
    assert len(back.history) == 200 and "other/0" not in back.offsets
