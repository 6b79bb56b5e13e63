"""Users the model was trained on start from their history in the artifact (model/histories.py), not empty:
the histories' storage, the artifact's checks, the engine's rule, and a real worker on Kafka."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.artifact import ArtifactError, load_artifact
from model.histories import UserHistories
from stream.engine import Engine, ModelBundle
from stream.kafka import find_free_port
from tests.model.toy import toy_dataset
from tests.stream.helpers import as_sourced, build_tiny_artifact, offline_state, offline_top_n
from tests.stream.worker_harness import Deployment


@pytest.fixture(scope="module")
def seeded_dir(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("seeded") / "artifact", histories=True)


@pytest.fixture(scope="module")
def bundle(seeded_dir):
    return ModelBundle.load(seeded_dir)


def _history(bundle: ModelBundle, user: str) -> tuple[list[str], list[float]]:
    dense, times = bundle.artifact.histories.get(user)
    return [bundle.artifact.item_ids[i] for i in dense.tolist()], times.tolist()


def test_histories_keep_each_users_last_interactions_and_round_trip(tmp_path):
    seq = toy_dataset(n_users=6, n_items=9, min_len=2, max_len=9, seed=3).sequences
    histories = UserHistories.from_sequences(seq, keep=4)
    assert len(histories) == 6
    for u, user in enumerate(seq.user_ids.tolist()):
        items, times = histories.get(user)
        start, end = seq.offsets[u], seq.offsets[u + 1]
        np.testing.assert_array_equal(items, seq.items[max(start, end - 4) : end])
        np.testing.assert_array_equal(times, seq.times[max(start, end - 4) : end])
    assert histories.get("nobody") is None
    histories.save(tmp_path / "h.npz")
    back = UserHistories.load(tmp_path / "h.npz")
    for user in seq.user_ids.tolist():
        for a, b in zip(back.get(user), histories.get(user)):
            np.testing.assert_array_equal(a, b)
    np.savez(tmp_path / "bad.npz", user_ids=back.user_ids, offsets=back.offsets[:-1], items=back.items, times=back.times)
    with pytest.raises(ValueError, match="offsets"):
        UserHistories.load(tmp_path / "bad.npz")


def test_the_artifact_carries_its_histories_under_its_checksums(seeded_dir, tiny_artifact_dir, tmp_path):
    artifact = load_artifact(seeded_dir)
    assert "histories.npz" in artifact.manifest["files"] and len(artifact.histories) == 16
    assert load_artifact(tiny_artifact_dir).histories is None  # written without them (as before they existed)
    tampered = tmp_path / "tampered"
    build_tiny_artifact(tampered, histories=True)
    (tampered / "histories.npz").write_bytes(b"not an npz")
    with pytest.raises(ArtifactError, match="histories.npz"):
        load_artifact(tampered)
    with pytest.raises(ArtifactError, match="histories.npz is not readable"):
        load_artifact(tampered, verify=False)


def test_a_known_users_first_event_is_served_from_their_whole_history(bundle):
    """The first list equals offline scoring of the artifact's history plus the event, and the state equals
    the one a worker reaches by streaming that history event by event first."""
    items, times = _history(bundle, "u2")
    event = {"user_id": "u2", "item_id": "i7", "timestamp": 1_000_000_000, "event_id": "new"}
    seeded = Engine(bundle, top_n=5).process(as_sourced([event]), {})
    assert (seeded.counts.new_users, seeded.counts.seeded, seeded.counts.reencoded) == (1, 1, 0)
    ids, scores = offline_top_n(bundle.artifact, items + ["i7"], times + [1e9], n=5)
    (rec,) = seeded.recommendations
    assert [i["item_id"] for i in rec["items"]] == ids and rec["strategy"] == "diffusion"
    np.testing.assert_allclose([i["score"] for i in rec["items"]], scores, rtol=1e-4, atol=1e-5)

    history = [{"user_id": "u2", "item_id": i, "timestamp": t, "event_id": f"h{k}"} for k, (i, t) in enumerate(zip(items, times))]
    streamed = Engine(bundle, top_n=5, seed_states=False).process(as_sourced(history + [event]), {})
    a, b = seeded.states["u2"], streamed.states["u2"]
    np.testing.assert_allclose(a.h, b.h, atol=1e-5)
    np.testing.assert_allclose(a.h, offline_state(bundle.artifact, items + ["i7"], times + [1e9]), atol=1e-5)
    for name in ("window", "window_freqs", "history_dense", "history_times"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.window_intervals, b.window_intervals, atol=1e-6)
    assert a.history == b.history == items + ["i7"] and a.last_ts == b.last_ts == 1e9
    assert a.event_count == 1 and a.model_version == bundle.version  # events applied here; the history is not counted


def test_a_bounded_history_keeps_the_last_items(bundle):
    items, _ = _history(bundle, "u5")
    state = Engine(bundle, history_len=3).process(as_sourced([{"user_id": "u5", "item_id": "i1", "timestamp": 1e9}]), {}).states["u5"]
    assert state.history == items[-2:] + ["i1"]  # the last history_len raw items
    index_of = bundle.item_of
    assert state.window.tolist() == [index_of[i] for i in items[-3:] + ["i1"]]  # encoded from the 3 kept, then the event


@pytest.mark.parametrize("when", ["at its last time", "half a second later", "before it"])
def test_an_event_not_after_the_history_starts_the_user_empty(bundle, when):
    """It may be one of the history's own interactions coming through again (a topic read from its start):
    seeded, it would count twice. Whole seconds: a history written with whole seconds holds 1000 for 1000.5."""
    last = _history(bundle, "u4")[1][-1]
    t = {"at its last time": last, "half a second later": last + 0.5, "before it": last - 100}[when]
    result = Engine(bundle).process(as_sourced([{"user_id": "u4", "item_id": "i3", "timestamp": t}]), {})
    assert result.counts.seeded == 0 and result.states["u4"].history == ["i3"]


def test_unknown_users_and_seeding_off_start_empty(bundle):
    events = as_sourced([{"user_id": "stranger", "item_id": "i3", "timestamp": 1e9}, {"user_id": "u1", "item_id": "i3", "timestamp": 1e9}])
    on, off = Engine(bundle).process(events, {}), Engine(bundle, seed_states=False).process(events, {})
    assert on.counts.seeded == 1 and on.states["stranger"].history == ["i3"] and len(on.states["u1"].history) > 1
    assert off.counts.seeded == 0 and off.states["u1"].history == ["i3"]


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_serves_known_users_from_their_history(kafka_bootstrap, seeded_dir, tmp_path):
    deployment = Deployment(kafka_bootstrap, seeded_dir, tmp_path)
    try:
        worker = deployment.start_worker("w1", find_free_port())
        artifact = load_artifact(seeded_dir)
        events = [{"user_id": user, "item_id": "i3", "timestamp": 1_000_000_000, "event_id": f"{user}-e0"} for user in ("u6", "u9", "stranger")]
        with deployment.producer() as producer:
            for event in events:
                producer.send(event)
        recommendations = deployment.collect({e["event_id"] for e in events})
        for user in ("u6", "u9"):
            dense, times = artifact.histories.get(user)
            items = [artifact.item_ids[i] for i in dense.tolist()] + ["i3"]
            status, state = worker.get(f"/state/{user}")
            assert status == 200 and state["history"] == items and state["event_count"] == 1
            np.testing.assert_allclose(state["h"], offline_state(artifact, items, times.tolist() + [1e9]), atol=1e-4)
            (rec,) = recommendations[f"{user}-e0"]
            assert [i.item_id for i in rec.items] == offline_top_n(artifact, items, times.tolist() + [1e9], n=5)[0]
        assert worker.get("/state/stranger")[1]["history"] == ["i3"]
        metrics = worker.metrics()
        assert metrics["difflsrec_users_seeded_total"] == 2 and metrics["difflsrec_new_users_total"] == 3
        assert json.loads(json.dumps(state))  # the state view stays plain JSON
    finally:
        deployment.close()
