"""The serving computation of one micro-batch, with no Kafka or Faust in it: validated events + the users'
current states -> their new states + one recommendation per event.

Per batch:
1. Events are grouped by user, keeping arrival (= offset) order.
2. States computed under another model version are re-encoded from their bounded raw history first.
3. Bookkeeping per user in order (dedup, history, counters), features for all events at once, then ONE
   GRU pass that continues every user's state over their new known items (``LongTermStepper``: the
   model's ``long_step`` cell, O(1) per event; a history is never re-read per event). The recurrence is
   sequential per user, so a batch costs as many GRU steps as its busiest user has events, each step
   batched over the users.
4. ONE fusion call and ONE FAISS search over the states the lists are computed from, then one message
   per event. By default that is one state per user: the state after their last event in the batch,
   whose list every one of their messages carries (``as_of_offset``/``as_of_event_id`` name that event).
   The messages of a batch leave together, so per-event lists for the earlier events would be superseded
   within milliseconds, while fusion rows would grow from users to events (ML-1M replayed in time order:
   ~4 users and ~60 events each in a batch of 256). ``fuse_every_event=True`` gives each event the list
   after exactly that event.

Rules:
* Interval: ``stats.interval_feature(t - last_ts)``, 0 for a user's first event, like training; ``last_ts``
  is the latest event time so far, so an event that arrives out of time order gets interval 0 and does not
  move ``last_ts`` back (it did: the late event and the next one both got the whole gap, e.g. 30 days).
* Dedup: an event at or below the last applied offset of its topic/partition, or whose ``event_id`` is
  in the user's recent-id ring, does not touch the state; it still gets a (``replay=True``) message.
* Unknown items (not in the model's vocabulary) go into the history (exclusions, later re-encoding) and
  ``last_ts``, but cannot move ``h`` or the window (they have no embedding).
* A user new to the table whose history the artifact holds (``model/histories.py``) starts from that
  history, re-encoded as after a model change, when their first event here is later than its last
  interaction; otherwise (not in it, or an event that may belong to it: a topic replayed from its start)
  they start empty, as every new user did before artifacts carried histories (``seed_states=False``).
* A user whose window is still empty (no known item yet) gets the most popular training items
  (``strategy="popularity"``, score = normalised training frequency), minus seen items.
* The model, its index and its version form one :class:`ModelBundle`; the engine reads ``self.bundle``
  once per batch, so a hot swap is one reference assignment between batches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from index import ItemIndex
from model.artifact import Artifact, load_artifact
from model.batching import collate
from model.online import Fusion, LongTermStepper
from stream.schemas import InteractionEvent
from stream.state import UserState

log = logging.getLogger(__name__)

DEDUP_RING = 16
DIFFUSION, POPULARITY = "diffusion", "popularity"
_FROM_HISTORY = "<artifact history>"  # model_version of a state built from an artifact's history until it is encoded


@dataclass(frozen=True)
class ModelBundle:
    """What serving needs from one model version, swapped as a whole."""

    artifact: Artifact
    index: ItemIndex
    device: torch.device
    item_of: dict[str, int]  # raw item id -> dense id
    popular: np.ndarray  # dense ids, most frequent in training first (the cold-start fallback)
    long_steps: LongTermStepper  # the GRU over several new events per user at once
    fuse: Fusion  # model.fuse, traced when the trace reproduces it

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def model(self):
        return self.artifact.model

    @property
    def short_len(self) -> int:
        return self.artifact.model.config.short_len

    @classmethod
    def from_artifact(cls, artifact: Artifact, inference_steps: int | None = None, index_kind: str | None = None) -> ModelBundle:
        """``index_kind``: None serves the artifact's own index (flat when it has none); a kind serves that kind,
        built from the item embeddings when the artifact's index is another (the worker's ``INDEX_KIND`` was
        ignored for every artifact ``bootstrap`` published, since each carries an index)."""
        model = artifact.model.eval()
        if not hasattr(model, "long_step") or not hasattr(model, "fuse"):
            raise TypeError(f"model {model.name!r} has no streaming API (long_step/fuse); serve a DiffLSRec artifact")
        if inference_steps is not None:
            cfg = model.config
            if cfg.fusion != "gate" and int(inference_steps) != cfg.inference_steps:
                # the validation scores (and the training chain, by default) are those of the artifact's own count
                log.warning("serving with %d reverse steps, but model %s was validated with %d (and trained through %d): its lists "
                            "are not the ones it was selected on (train with --set difflsrec.inference_steps=%d to serve that chain)",
                            inference_steps, artifact.version, cfg.inference_steps, cfg.train_steps or cfg.inference_steps, inference_steps)
            cfg.inference_steps = int(inference_steps)
        device = next(model.parameters()).device
        index_dir = artifact.path / "index"
        index = ItemIndex.load(index_dir) if (index_dir / "index.json").is_file() else None
        if index is None or (index_kind is not None and index.kind != index_kind):
            if index is not None:
                log.info("artifact %s carries a %s index; building the configured %s index from its item embeddings", artifact.version, index.kind, index_kind)
            with torch.inference_mode():
                table = model.item_embeddings().detach().float().cpu().numpy()
            # the whole table with the vocabulary: "<pad>" is skipped, so dense ids = model item ids
            index = ItemIndex.build(table, artifact.item_ids, kind=index_kind or "flat")
        counts = np.asarray(artifact.stats.item_counts)
        popular = np.argsort(-counts[1:], kind="stable") + 1
        return cls(artifact, index, device, artifact.item_index_of(), popular.astype(np.int64), LongTermStepper(model), Fusion(model))

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu", inference_steps: int | None = None, index_kind: str | None = None) -> ModelBundle:
        return cls.from_artifact(load_artifact(resolve_artifact(path), device), inference_steps, index_kind)


def resolve_artifact(path: Path) -> Path:
    """An artifact directory, or the live version of a registry (``bootstrap.registry``: ``LATEST`` names
    a directory under ``versions/``)."""
    from bootstrap.registry import Registry

    path = Path(path).expanduser()
    if (path / "manifest.json").is_file():
        return path
    live = Registry(path).latest_path()  # raises RegistryError if LATEST names no published version
    if live is None:
        raise FileNotFoundError(f"{path} is neither a model artifact (manifest.json) nor a registry with a published version; train one with `difflsrec train --out DIR` or `difflsrec bootstrap`")
    return live


def gaps_after_latest(times: np.ndarray) -> np.ndarray:
    """Each event's time after the latest one before it (0 for the first, and for one earlier than that
    latest time: an event that arrived out of order), as the event-by-event path measures them. For times
    in order it is |t_j - t_(j-1)|, the training feature."""
    if not len(times):
        return np.zeros(0, dtype=np.float64)
    latest = np.maximum.accumulate(times)
    return np.maximum(0.0, times - np.concatenate((times[:1], latest[:-1])))


@dataclass(frozen=True)
class SourcedEvent:
    """A validated event with the Kafka position it was read from."""

    event: InteractionEvent
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # Kafka record timestamp

    @property
    def position_key(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass
class BatchCounts:
    applied: int = 0
    replayed: int = 0
    unknown_items: int = 0
    new_users: int = 0
    seeded: int = 0  # of the new users, started from the artifact's history of them
    reencoded: int = 0
    fallback: int = 0


@dataclass
class BatchResult:
    states: dict[str, UserState]  # every user of the batch, new objects (inputs are never mutated)
    # one per input event, same order: dicts of the Recommendation schema, built without per-message
    # validation (it cost more than the model on CPU); serialise with schemas.dump_recommendation
    recommendations: list[dict]
    counts: BatchCounts = field(default_factory=BatchCounts)
    # CPU seconds of this thread per stage (profiling, /metrics): CPU rather than wall time, because on a
    # shared machine wall time also counts the time the process waited for a core
    timings: dict[str, float] = field(default_factory=dict)


class _Working:
    """A user's state while a batch is applied: Python lists that grow per event, turned back into arrays
    once per batch (per-event numpy appends cost more than the GRU step)."""

    __slots__ = ("state", "h0", "window", "window_intervals", "window_freqs", "items", "times", "dense", "fresh")

    def __init__(self, state: UserState):
        self.state = state
        self.h0 = state.h  # the stored state, before this batch
        self.window = state.window.tolist()
        self.window_intervals = state.window_intervals.tolist()
        self.window_freqs = state.window_freqs.tolist()
        self.items: list[str] = []  # events applied in this batch, oldest first
        self.times: list[float] = []
        self.dense: list[int] = []
        self.fresh: list[int] = []  # their indices into the batch's arrays of applied events

    def seen(self, applied: int, keep: int) -> np.ndarray:
        """Dense ids of the bounded history after the first ``applied`` events of this batch."""
        base = self.state.history_dense
        return np.concatenate((base, np.asarray(self.dense[:applied], dtype=np.int32)))[-keep:] if applied else base

    def finish(self, h: np.ndarray | None, n: int, keep: int) -> UserState:
        s = self.state
        s.h = h
        s.window = np.asarray(self.window[-n:], dtype=np.int32)
        s.window_intervals = np.asarray(self.window_intervals[-n:], dtype=np.float32)
        s.window_freqs = np.asarray(self.window_freqs[-n:], dtype=np.int32)
        if self.items:
            s.history = (s.history + self.items)[-keep:]
            s.history_times = np.concatenate((s.history_times, np.asarray(self.times, dtype=np.float64)))[-keep:]
            s.history_dense = np.concatenate((s.history_dense, np.asarray(self.dense, dtype=np.int32)))[-keep:]
        return s


@dataclass
class _Snapshot:
    """A user's state right after one event: what that event's recommendation is computed from."""

    user: str
    known: int  # how many of the user's new known items of this batch the GRU state includes
    window: list[int]
    seen: np.ndarray


class Engine:
    def __init__(
        self, bundle: ModelBundle, *, top_n: int = 10, exclude_seen: bool = True, history_len: int = 200, fuse_every_event: bool = False,
        seed_states: bool = True, clock: Callable[[], float] = time.time,
    ):
        self.bundle = bundle
        self.top_n = top_n
        self.exclude_seen = exclude_seen
        self.history_len = history_len
        self.fuse_every_event = fuse_every_event
        self.seed_states = seed_states
        self.clock = clock

    def new_state(self, bundle: ModelBundle | None = None) -> UserState:
        return UserState(model_version=(bundle or self.bundle).version)

    def process(self, events: Sequence[SourcedEvent], states: dict[str, UserState | None]) -> BatchResult:
        bundle = self.bundle  # one model for the whole batch, even if a swap lands meanwhile
        counts = BatchCounts()
        timings = dict.fromkeys(("reencode", "long_step", "fuse", "search", "messages"), 0.0)
        started = time.thread_time()
        by_user: dict[str, list[int]] = {}
        for i, sourced in enumerate(events):
            by_user.setdefault(sourced.event.user_id, []).append(i)
        copies: dict[str, UserState] = {}
        for user in by_user:
            current = states.get(user)
            if current is None:
                counts.new_users += 1
                seeded = self._from_history(bundle, user, events[by_user[user][0]].event.timestamp) if self.seed_states else None
                counts.seeded += seeded is not None
                copies[user] = seeded or self.new_state(bundle)
            else:
                copies[user] = current.copy()
        stale = [s for s in copies.values() if s.model_version != bundle.version]
        if stale:
            counts.reencoded += sum(s.model_version != _FROM_HISTORY for s in stale)
            self._reencode(bundle, stale)
        timings["reencode"] = time.thread_time() - started

        started = time.thread_time()
        work = {user: _Working(state) for user, state in copies.items()}
        with torch.inference_mode():
            snapshots, replayed, h_after = self._apply(bundle, events, by_user, work, counts)
            new_states = {}
            for user, w in work.items():
                after = h_after.get(user)
                new_states[user] = w.finish(w.h0 if after is None else after[-1], bundle.short_len, self.history_len)
            timings["long_step"] = time.thread_time() - started
            recommendations = self._recommend(bundle, events, by_user, work, h_after, snapshots, replayed, counts, timings)
        return BatchResult(new_states, recommendations, counts, timings)

    # ---- state updates ------------------------------------------------------------------------------
    def _apply(self, bundle: ModelBundle, events, by_user: dict[str, list[int]], work: dict[str, _Working], counts: BatchCounts) -> tuple[dict[int, _Snapshot], set[int], dict[str, np.ndarray]]:
        """Apply every event; snapshot the state after each event that gets its own list (every event, or
        each user's last event of the batch).

        Bookkeeping runs per user in offset order; features are computed for all applied events at once;
        then ONE GRU pass continues every user's state over their new known items (``long_steps``: the
        same cell as ``long_step``, with the input projections of all events computed together). Returns
        the snapshots and, per user with new known items, the GRU states after each of them (k, d).
        """
        stats, n, keep = bundle.artifact.stats, bundle.short_len, self.history_len
        replayed: set[int] = set()
        dts, firsts, denses = [], [], []
        for user, indices in by_user.items():
            w = work[user]
            for i in indices:
                sourced = events[i]
                if self._already_applied(w.state, sourced):
                    replayed.add(i)
                    continue
                last = w.state.last_ts
                dense = bundle.item_of.get(sourced.event.item_id, 0)
                w.fresh.append(len(denses))
                dts.append(0.0 if last is None else max(0.0, sourced.event.timestamp - last))
                firsts.append(last is None)
                denses.append(dense)
                self._record(w, sourced, dense)
        counts.applied += len(denses)
        counts.replayed += len(replayed)
        dense = np.asarray(denses, dtype=np.int64)
        intervals = stats.interval_feature(np.asarray(dts, dtype=np.float64))
        intervals[np.asarray(firsts, dtype=bool)] = 0.0  # a user's first interaction has interval 0, as in training
        freqs = stats.frequency_bucket(dense)
        counts.unknown_items += int((dense == 0).sum())
        dense_l, intervals_l, freqs_l = dense.tolist(), intervals.tolist(), freqs.tolist()

        snapshots: dict[int, _Snapshot] = {}
        steps: dict[str, list[int]] = {}  # per user: indices (into the applied events) of new known items
        for user, indices in by_user.items():
            w, applied, known = work[user], 0, steps.setdefault(user, [])
            for i in indices:
                if i not in replayed:
                    j = w.fresh[applied]
                    applied += 1
                    if dense_l[j]:  # unknown items have no embedding: they move neither h nor the window
                        known.append(j)
                        w.window.append(dense_l[j])
                        w.window_intervals.append(intervals_l[j])
                        w.window_freqs.append(freqs_l[j])
                if self.fuse_every_event or i == indices[-1]:
                    snapshots[i] = _Snapshot(user, len(known), w.window[-n:], w.seen(applied, keep))
        return snapshots, replayed, self._advance(bundle, work, {u: k for u, k in steps.items() if k}, dense, intervals, freqs)

    @staticmethod
    def _advance(bundle: ModelBundle, work: dict[str, _Working], steps: dict[str, list[int]], dense, intervals, freqs) -> dict[str, np.ndarray]:
        """One batched GRU pass over each user's new known items, from their stored state."""
        if not steps:
            return {}
        users = list(steps)
        length = max(len(k) for k in steps.values())
        index = np.zeros((len(users), length), dtype=np.int64)
        valid = np.zeros((len(users), length), dtype=bool)
        for row, user in enumerate(users):
            index[row, : len(steps[user])] = steps[user]
            valid[row, : len(steps[user])] = True
        items = np.where(valid, dense[index], 0)  # right-padded with 0 = no event
        d = bundle.model.config.d
        h0 = np.stack([work[u].h0 if work[u].h0 is not None else np.zeros(d, np.float32) for u in users])
        dev = bundle.device
        states = bundle.long_steps(
            torch.from_numpy(h0).to(dev), torch.from_numpy(items).to(dev),
            torch.from_numpy(np.where(valid, intervals[index], 0.0).astype(np.float32)).to(dev), torch.from_numpy(np.where(valid, freqs[index], 0)).to(dev),
        ).float().cpu().numpy()
        return {user: states[row, : len(steps[user])] for row, user in enumerate(users)}

    def _from_history(self, bundle: ModelBundle, user: str, first_time: float) -> UserState | None:
        """A new user's state from the artifact's history of them, to be encoded with the stale states; None
        when the artifact has none for them, or when their first event here is not later than that history's
        end: it may be one of its interactions coming through again (a topic read from its start), which
        would then count twice."""
        found = None if bundle.artifact.histories is None else bundle.artifact.histories.get(user)
        if found is None:
            return None
        dense, times = found[0][-self.history_len :], found[1][-self.history_len :]
        # whole seconds: a history written with whole seconds (the bootstrap job's) holds 1000 for an event
        # at 1000.5, which must not pass for a later one
        if not len(times) or not math.floor(first_time) > times[-1]:
            return None
        items = bundle.artifact.item_ids
        return UserState(
            model_version=_FROM_HISTORY, history=[items[i] for i in dense.tolist()], history_times=times.astype(np.float64),
            history_dense=np.zeros(len(dense), np.int32), last_ts=float(times[-1]),
        )

    @staticmethod
    def _record(w: _Working, sourced: SourcedEvent, dense: int) -> None:
        """Bookkeeping of an applied event: history, time, counters, dedup positions."""
        event, state = sourced.event, w.state
        w.items.append(event.item_id)
        w.times.append(event.timestamp)
        w.dense.append(dense)
        state.last_ts = event.timestamp if state.last_ts is None else max(state.last_ts, event.timestamp)
        state.event_count += 1
        state.unknown_count += int(dense == 0)
        state.offsets[sourced.position_key] = sourced.offset
        if event.event_id is not None:
            state.recent_event_ids = (state.recent_event_ids + [event.event_id])[-DEDUP_RING:]

    @staticmethod
    def _already_applied(state: UserState, sourced: SourcedEvent) -> bool:
        last = state.offsets.get(sourced.position_key)
        if last is not None and sourced.offset <= last:
            return True
        return sourced.event.event_id is not None and sourced.event.event_id in state.recent_event_ids

    def _reencode(self, bundle: ModelBundle, states: list[UserState]) -> None:
        """Rebuild h, the window and the dense history under ``bundle``'s model from the raw history, with
        the same features the event-by-event path computes (so re-encoding then streaming equals streaming)."""
        stats, n = bundle.artifact.stats, bundle.short_len
        rows = []
        for s in states:
            dense = np.array([bundle.item_of.get(item, 0) for item in s.history], dtype=np.int64)
            times = np.asarray(s.history_times, dtype=np.float64)
            intervals = stats.interval_feature(gaps_after_latest(times))
            freqs = stats.frequency_bucket(dense)
            known = dense > 0
            s.history_dense = dense.astype(np.int32)
            s.window = dense[known][-n:].astype(np.int32)
            s.window_intervals = intervals[known][-n:]
            s.window_freqs = freqs[known][-n:].astype(np.int32)
            s.model_version = bundle.version
            rows.append((dense, intervals, freqs))
        with torch.inference_mode():
            # unknown items (dense id 0) are masked like padding: the GRU carries h over them
            h = bundle.model.encode_long(collate(rows, np.zeros(len(rows))).to(bundle.device))[:, -1].float().cpu().numpy()
        for s, row, (dense, _, _) in zip(states, h, rows):
            s.h = row.copy() if (dense > 0).any() else None

    # ---- recommendations ----------------------------------------------------------------------------
    def _recommend(
        self, bundle: ModelBundle, events, by_user: dict[str, list[int]], work: dict[str, _Working], h_after: dict[str, np.ndarray],
        snapshots: dict[int, _Snapshot], replayed: set[int], counts: BatchCounts, timings: dict[str, float],
    ) -> list[dict]:
        """One fused row per snapshot, one FAISS search for all of them, then one message per event: its own
        list, or (by default) the list of its user's last event in the batch, which every message says in
        ``as_of_offset``/``as_of_event_id``."""
        n, k = bundle.short_len, self.top_n
        started = time.thread_time()
        lists: dict[int, list[dict]] = {}
        fused = [i for i, snap in snapshots.items() if snap.window]
        if fused:
            h = np.stack([h_after[snap.user][snap.known - 1] if snap.known else work[snap.user].h0 for snap in (snapshots[i] for i in fused)])
            window = np.zeros((len(fused), n), dtype=np.int64)
            for row, i in enumerate(fused):
                w = snapshots[i].window
                window[row, n - len(w) :] = w  # right-aligned, left-padded with 0, as offline
            dev = bundle.device
            e_user = bundle.fuse(torch.from_numpy(h).to(dev), torch.from_numpy(window).to(dev)).float().cpu().numpy()
            timings["fuse"] = time.thread_time() - started
            started = time.thread_time()
            exclude = [snapshots[i].seen.astype(np.int64) for i in fused] if self.exclude_seen else None
            ids, scores = bundle.index.search(e_user, k, exclude=exclude)
            timings["search"] = time.thread_time() - started
            started = time.thread_time()
            for row, i in enumerate(fused):
                lists[i] = [{"item_id": item, "score": score} for item, score in zip(ids[row], scores[row].tolist())]
        for i, snap in snapshots.items():
            if not snap.window:
                lists[i] = self._popular(bundle, snap.seen)
        emitted = self.clock()
        out: list[dict | None] = [None] * len(events)
        for indices in by_user.values():
            for i in indices:
                target = i if i in snapshots else indices[-1]
                e, src, as_of = events[i].event, events[i], events[target]
                strategy = DIFFUSION if snapshots[target].window else POPULARITY
                counts.fallback += strategy == POPULARITY
                out[i] = {
                    "user_id": e.user_id, "items": lists[target], "model_version": bundle.version, "event_id": e.event_id,
                    "source": {"topic": src.topic, "partition": src.partition, "offset": src.offset, "timestamp_ms": src.timestamp_ms},
                    "as_of_offset": as_of.offset, "as_of_event_id": as_of.event.event_id,
                    "event_time": e.timestamp, "emit_time": emitted, "strategy": strategy, "replay": i in replayed,
                }
        timings["messages"] = time.thread_time() - started
        return out

    def _popular(self, bundle: ModelBundle, seen: np.ndarray) -> list[dict]:
        candidates = bundle.popular[: self.top_n + len(seen)]
        if self.exclude_seen and len(seen):
            candidates = candidates[~np.isin(candidates, seen)]
        top = candidates[: self.top_n]
        freq = bundle.artifact.stats.item_frequency(top).tolist()
        return [{"item_id": bundle.artifact.item_ids[d], "score": f} for d, f in zip(top.tolist(), freq)]
