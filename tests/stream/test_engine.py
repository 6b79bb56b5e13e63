"""The serving engine without Kafka: parity with offline scoring, coalescing, dedup, unknown items,
re-encoding after a model change, bounded history, and purity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.online import Fusion, LongTermStepper
from stream.engine import Engine, ModelBundle, SourcedEvent
from stream.schemas import Recommendation, dump_recommendation
from stream.state import decode_state, encode_state
from tests.stream.helpers import as_sourced, make_events, offline_state, offline_top_n, streams_of

TOPIC = "interactions"


@pytest.fixture(scope="module")
def bundle(tiny_artifact_dir):
    return ModelBundle.load(tiny_artifact_dir)


def _run(engine: Engine, sourced: list[SourcedEvent], batch_sizes: list[int], states=None):
    """Feed the events in consecutive batches of the given sizes; all recommendations and the final states."""
    states = dict(states or {})
    recs, at = [], 0
    for size in batch_sizes:
        result = engine.process(sourced[at : at + size], states)
        states.update(result.states)
        recs += result.recommendations
        at += size
    assert at == len(sourced)
    return recs, states


def test_long_term_stepper_equals_one_long_step_per_event(bundle):
    model = bundle.model
    torch.manual_seed(0)
    h0 = torch.randn(3, model.config.d) * 0.1
    items = torch.tensor([[4, 9, 2, 0], [7, 0, 0, 0], [1, 2, 3, 4]])  # right-padded
    intervals, freqs = torch.rand(3, 4), torch.randint(1, 8, (3, 4))
    with torch.inference_mode():
        for stepper in (LongTermStepper(model, script=True), LongTermStepper(model, script=False)):
            states = stepper(h0, items, intervals, freqs)
            for row in range(3):
                h = h0[row : row + 1]
                for j in range(4):
                    if items[row, j] > 0:
                        h = model.long_step(h, items[row, j : j + 1], intervals[row, j : j + 1], freqs[row, j : j + 1])
                    assert torch.allclose(states[row, j], h[0], atol=1e-6)


@pytest.mark.parametrize("batch_sizes", [[1] * 36, [36], [5, 13, 1, 17]], ids=["one-by-one", "one-batch", "mixed"])
def test_every_event_matches_offline_scoring_of_its_prefix(bundle, batch_sizes):
    """fuse_every_event: each event's list is exactly what offline ``model.score`` ranks for the history up
    to that event (seen items excluded), however the events are cut into micro-batches."""
    engine = Engine(bundle, top_n=5, fuse_every_event=True)
    events = make_events(n_users=4, per_user=9, seed=1)
    recs, _ = _run(engine, as_sourced(events), batch_sizes)
    assert len(recs) == len(events)
    prefix: dict[str, list[dict]] = {}
    for event, rec in zip(events, recs):
        prefix.setdefault(event["user_id"], []).append(event)
        history = prefix[event["user_id"]]
        ids, scores = offline_top_n(bundle.artifact, [e["item_id"] for e in history], [e["timestamp"] for e in history], n=5)
        assert rec["event_id"] == event["event_id"] and rec["as_of_event_id"] == event["event_id"]
        assert [i["item_id"] for i in rec["items"]] == ids
        np.testing.assert_allclose([i["score"] for i in rec["items"]], scores, rtol=1e-4, atol=1e-5)
        assert rec["strategy"] == "diffusion" and not rec["replay"]


def test_a_users_events_in_one_batch_share_the_list_after_the_last_of_them(bundle):
    engine = Engine(bundle, top_n=5)  # the default: one fused list per user per batch
    events = make_events(n_users=1, per_user=3, seed=2) + make_events(n_users=1, per_user=1, seed=3, prefix="v")
    recs, _ = _run(engine, as_sourced(events), [4])
    u_recs = [r for r in recs if r["user_id"] == "u0"]
    assert [r["event_id"] for r in u_recs] == ["u0-e0", "u0-e1", "u0-e2"]  # one message per event
    ids, _ = offline_top_n(bundle.artifact, [e["item_id"] for e in events[:3]], [e["timestamp"] for e in events[:3]], n=5)
    for r in u_recs:
        assert [i["item_id"] for i in r["items"]] == ids
        assert (r["as_of_offset"], r["as_of_event_id"]) == (2, "u0-e2")
    (v_rec,) = [r for r in recs if r["user_id"] == "v0"]
    assert (v_rec["as_of_offset"], v_rec["source"]["offset"]) == (3, 3)
    for r in recs:
        Recommendation.model_validate_json(dump_recommendation(r))


def test_replayed_events_do_not_advance_the_state(bundle):
    engine = Engine(bundle, top_n=5)
    sourced = as_sourced(make_events(n_users=3, per_user=4, seed=4))
    _, states = _run(engine, sourced, [7, 5])
    before = {u: encode_state(s) for u, s in states.items()}
    # at-least-once redelivery: the same offsets again, in other batch shapes
    recs, after = _run(engine, sourced[3:], [2, 7], states)
    assert all(r["replay"] for r in recs) and len(recs) == 9
    assert {u: encode_state(s) for u, s in after.items()} == before
    # a producer retry: the same event ids at new offsets
    retried = [SourcedEvent(s.event, TOPIC, 0, 100 + k, 0) for k, s in enumerate(sourced[-3:])]
    result = engine.process(retried, after)
    assert [r["replay"] for r in result.recommendations] == [True] * 3 and result.counts.replayed == 3
    assert {u: s.event_count for u, s in result.states.items()} == {u: 4 for u in result.states}


def test_unknown_items_are_kept_but_do_not_move_the_model_state(bundle):
    engine = Engine(bundle, top_n=5)
    events = [
        {"user_id": "n", "item_id": "brand-new-1", "timestamp": 1_000_000_000, "event_id": "a"},
        {"user_id": "n", "item_id": "i3", "timestamp": 1_000_000_600, "event_id": "b"},
        {"user_id": "n", "item_id": "brand-new-2", "timestamp": 1_000_090_000, "event_id": "c"},
        {"user_id": "n", "item_id": "i4", "timestamp": 1_000_090_060, "event_id": "d"},
    ]
    recs, states = _run(engine, as_sourced(events), [1, 1, 1, 1])
    # a new user with no known item: the most popular training items
    popular = [bundle.artifact.item_ids[d] for d in bundle.popular[:5]]
    assert recs[0]["strategy"] == "popularity" and [i["item_id"] for i in recs[0]["items"]] == popular
    assert [r["strategy"] for r in recs[1:]] == ["diffusion"] * 3
    assert recs[2]["items"] == recs[1]["items"]  # the unknown item changed neither h nor the window
    state = states["n"]
    assert state.history == [e["item_id"] for e in events] and state.unknown_count == 2 and state.event_count == 4
    assert state.window.tolist() == [bundle.item_of["i3"], bundle.item_of["i4"]]
    assert state.last_ts == 1_000_090_060
    # the interval of "i4" is measured from the unknown item before it, as a retrained model will see it
    np.testing.assert_allclose(state.h, offline_state(bundle.artifact, state.history, list(state.history_times)), atol=1e-5)


def test_a_state_from_another_model_version_is_reencoded_from_its_history(bundle, other_artifact_dir):
    events = make_events(n_users=2, per_user=6, seed=5)
    _, states = _run(Engine(bundle), as_sourced(events[:-2]), [10])
    new_bundle = ModelBundle.load(other_artifact_dir)
    assert new_bundle.version != bundle.version
    engine = Engine(new_bundle, top_n=5, fuse_every_event=True)
    result = engine.process(as_sourced(events[-2:], start_offset=10), states)
    assert result.counts.reencoded == 2
    for user, stream in streams_of(events).items():
        state = result.states[user]
        assert state.model_version == new_bundle.version and state.event_count == 6
        np.testing.assert_allclose(state.h, offline_state(new_bundle.artifact, stream.items, stream.times), atol=1e-5)
    last = result.recommendations[-1]
    stream = streams_of(events)[last["user_id"]]
    ids, _ = offline_top_n(new_bundle.artifact, stream.items, stream.times, n=5)
    assert [i["item_id"] for i in last["items"]] == ids and last["model_version"] == new_bundle.version


def test_an_event_out_of_time_order_does_not_move_the_clock_back(bundle):
    """A late event (30 days before the latest) used to set last_ts back: it and the next event both got a
    30-day interval. Now it gets 0, and the next one its gap to the latest time; re-encoding agrees."""
    t0, stats = 1_000_000_000, bundle.artifact.stats
    times = [t0, t0 + 60, t0 - 30 * 86_400, t0 + 120]
    events = [{"user_id": "late", "item_id": f"i{k + 1}", "timestamp": t, "event_id": f"late{k}"} for k, t in enumerate(times)]
    _, states = _run(Engine(bundle), as_sourced(events), [1, 1, 1, 1])
    state = states["late"]
    assert state.last_ts == t0 + 120
    expected = stats.interval_feature(np.array([0.0, 60.0, 0.0, 60.0]))
    np.testing.assert_allclose(state.window_intervals, expected, atol=1e-6)
    _, after_late = _run(Engine(bundle), as_sourced(events[:3]), [3])
    assert after_late["late"].last_ts == t0 + 60
    # re-encoding the same raw history (a model change) computes the same features and state
    again = state.copy()
    again.model_version = "another"
    Engine(bundle)._reencode(bundle, [again])
    np.testing.assert_allclose(again.window_intervals, state.window_intervals, atol=1e-6)
    np.testing.assert_allclose(again.h, state.h, atol=1e-5)


def test_history_is_bounded_and_exclusions_follow_it(bundle):
    engine = Engine(bundle, top_n=25, history_len=5)
    events = [{"user_id": "b", "item_id": f"i{k}", "timestamp": 1_000_000_000 + 60 * k, "event_id": f"b{k}"} for k in range(1, 13)]
    recs, states = _run(engine, as_sourced(events), [4, 8])
    state = states["b"]
    assert state.history == [f"i{k}" for k in range(8, 13)] and state.event_count == 12 and len(state.history_times) == 5
    listed = {i["item_id"] for i in recs[-1]["items"]}
    assert not listed & {f"i{k}" for k in range(8, 13)}  # the last 5 are excluded...
    assert listed & {f"i{k}" for k in range(1, 8)}  # ...older ones may come back (25 of 30 items are listed)


def test_inputs_are_not_mutated_and_outputs_round_trip(bundle):
    engine = Engine(bundle)
    sourced = as_sourced(make_events(n_users=3, per_user=3, seed=6))
    _, states = _run(engine, sourced[:5], [5])
    stored = {u: decode_state(encode_state(s)) for u, s in states.items()}
    snapshot = {u: encode_state(s) for u, s in stored.items()}
    result = engine.process(sourced[5:], stored)
    assert {u: encode_state(s) for u, s in stored.items()} == snapshot
    for user, state in result.states.items():
        assert state is not stored.get(user)
        assert encode_state(decode_state(encode_state(state))) == encode_state(state)


def test_serving_runs_compiled_graphs_that_equal_the_eager_model(bundle, tiny_artifact_dir):
    # the tiny model scripts and traces; both match the eager functions on shapes never seen before
    assert isinstance(bundle.long_steps.gru, torch.jit.ScriptModule) and isinstance(bundle.fuse.run, torch.jit.ScriptModule)
    torch.manual_seed(1)
    h, window = 0.1 * torch.randn(5, 16), torch.randint(0, 31, (5, 4))
    window[:, -1] = torch.randint(1, 31, (5,))  # at least one item per row, as served
    with torch.inference_mode():
        assert torch.allclose(bundle.fuse(h, window), bundle.model.fuse(h, window), atol=1e-6)
    # a stochastic sampler cannot be checked against its own trace: it stays eager
    stochastic = ModelBundle.load(tiny_artifact_dir)
    stochastic.model.config.inference_noise = "sample"
    assert Fusion(stochastic.model).run == stochastic.model.fuse


def test_serving_another_step_count_than_the_artifacts_is_warned_about(tiny_artifact_dir, caplog):
    own = ModelBundle.load(tiny_artifact_dir).model.config.inference_steps
    with caplog.at_level("WARNING", logger="stream.engine"):
        same = ModelBundle.load(tiny_artifact_dir, inference_steps=own)
    assert same.model.config.inference_steps == own and not caplog.records
    with caplog.at_level("WARNING", logger="stream.engine"):
        other = ModelBundle.load(tiny_artifact_dir, inference_steps=own + 3)
    assert other.model.config.inference_steps == own + 3
    assert f"serving with {own + 3} reverse steps" in caplog.text and f"validated with {own}" in caplog.text


def test_the_configured_index_kind_is_served_whatever_index_the_artifact_carries(tiny_artifact_dir, tmp_path):
    """Unset, the artifact's own index is served (flat when it has none); set, that kind, built from the item
    embeddings when the artifact's is another. Every artifact bootstrap publishes carries an index, and the
    worker's INDEX_KIND used to be ignored for all of them."""
    import shutil

    from bootstrap.job import build_index
    from model.artifact import load_artifact

    artifact = tmp_path / "with-index"
    shutil.copytree(tiny_artifact_dir, artifact)
    loaded = load_artifact(artifact)
    build_index(loaded.model, loaded.item_ids, "hnsw").save(artifact / "index")
    assert ModelBundle.load(artifact).index.kind == "hnsw"  # unset: the artifact's own
    flat = ModelBundle.load(artifact, index_kind="flat")
    assert flat.index.kind == "flat" and len(flat.index) == len(loaded.item_ids) - 1
    assert ModelBundle.load(tiny_artifact_dir).index.kind == "flat"  # no index in the artifact: flat
    assert ModelBundle.load(tiny_artifact_dir, index_kind="ivf").index.kind == "ivf"
