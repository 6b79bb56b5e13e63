"""The per-user streaming state (the contract between the model and the worker) and its binary codec.

A value in the RocksDB table is one format byte followed by a msgpack map; arrays travel as raw
little-endian bytes (``h`` as float32), so a state costs a few KB at most and decodes without
parsing floats one by one. Unknown format bytes are an error (a newer worker wrote the value):
:class:`StateFormatError`.

Dense item ids (``window``, ``history_dense``) mean something only for the model version that produced
them (``model_version``); raw item ids and times (``history``, ``history_times``) survive a model change
and are what the worker re-encodes the state from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import numpy as np

FORMAT_V1 = 1

_F32, _F64, _I32 = np.dtype("<f4"), np.dtype("<f8"), np.dtype("<i4")


class StateFormatError(ValueError):
    """A stored value that is not a user state this code can read."""


def _empty(dtype: np.dtype) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class UserState:
    model_version: str
    h: np.ndarray | None = None  # (d,) float32 long-term GRU state; None until the first known item (= zeros)
    window: np.ndarray = field(default_factory=lambda: _empty(_I32))  # last <= n known items (dense ids), oldest first
    window_intervals: np.ndarray = field(default_factory=lambda: _empty(_F32))  # their normalised intervals
    window_freqs: np.ndarray = field(default_factory=lambda: _empty(_I32))  # their frequency buckets
    history: list[str] = field(default_factory=list)  # raw item ids, oldest first, at most history_len
    history_times: np.ndarray = field(default_factory=lambda: _empty(_F64))  # their event times (epoch s)
    history_dense: np.ndarray = field(default_factory=lambda: _empty(_I32))  # their dense ids under model_version (0 = unknown)
    last_ts: float | None = None  # time of the last applied event
    event_count: int = 0  # events applied (replays excluded)
    unknown_count: int = 0  # of which with an item outside the model's vocabulary
    offsets: dict[str, int] = field(default_factory=dict)  # "topic/partition" -> last applied offset
    recent_event_ids: list[str] = field(default_factory=list)  # the last few applied event ids (dedup ring)
    latest: bytes | None = None  # the last Recommendation sent for this user, as JSON (served over HTTP)

    def copy(self) -> UserState:
        """A copy whose containers can be replaced or appended to without touching this one."""
        return UserState(
            self.model_version, self.h, self.window, self.window_intervals, self.window_freqs, list(self.history),
            self.history_times, self.history_dense, self.last_ts, self.event_count, self.unknown_count,
            dict(self.offsets), list(self.recent_event_ids), self.latest,
        )


def encode_state(state: UserState) -> bytes:
    body = {
        "v": state.model_version,
        "h": None if state.h is None else np.ascontiguousarray(state.h, _F32).tobytes(),
        "w": np.ascontiguousarray(state.window, _I32).tobytes(),
        "wi": np.ascontiguousarray(state.window_intervals, _F32).tobytes(),
        "wf": np.ascontiguousarray(state.window_freqs, _I32).tobytes(),
        "hi": state.history,
        "ht": np.ascontiguousarray(state.history_times, _F64).tobytes(),
        "hd": np.ascontiguousarray(state.history_dense, _I32).tobytes(),
        "ts": state.last_ts,
        "n": state.event_count,
        "u": state.unknown_count,
        "o": state.offsets,
        "e": state.recent_event_ids,
        "r": state.latest,
    }
    return bytes((FORMAT_V1,)) + msgpack.packb(body, use_bin_type=True)


def decode_state(value: bytes) -> UserState:
    if not value:
        raise StateFormatError("empty state value")
    if value[0] != FORMAT_V1:
        raise StateFormatError(f"state format {value[0]} is not supported (this worker reads format {FORMAT_V1})")
    try:
        b = msgpack.unpackb(value[1:], raw=False)
        state = UserState(
            model_version=b["v"],
            h=None if b["h"] is None else np.frombuffer(b["h"], _F32),
            window=np.frombuffer(b["w"], _I32),
            window_intervals=np.frombuffer(b["wi"], _F32),
            window_freqs=np.frombuffer(b["wf"], _I32),
            history=list(b["hi"]),
            history_times=np.frombuffer(b["ht"], _F64),
            history_dense=np.frombuffer(b["hd"], _I32),
            last_ts=b["ts"],
            event_count=int(b["n"]),
            unknown_count=int(b["u"]),
            offsets=dict(b["o"]),
            recent_event_ids=list(b["e"]),
            latest=b["r"],
        )
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as error:
        raise StateFormatError(f"corrupt user state: {error}") from error
    if not (len(state.window) == len(state.window_intervals) == len(state.window_freqs)):
        raise StateFormatError("corrupt user state: window arrays differ in length")
    if not (len(state.history) == len(state.history_times) == len(state.history_dense)):
        raise StateFormatError("corrupt user state: history arrays differ in length")
    return state
