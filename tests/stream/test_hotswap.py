"""Hot swap under load: a real worker serving a registry switches versions while events flow.

v1 -> v2 is announced on model-updates; v2 -> v3 is only published (LATEST), found by polling. v2 and v3
know five items v1 does not. No event may lose its recommendation, versions must switch cleanly (never
back), states must be re-encoded with the new model, and the new items must become recommendable.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from kafka import KafkaProducer

from bootstrap.job import build_index
from bootstrap.registry import Registry
from model.artifact import load_artifact, save_artifact
from model.registry import build
from model.training import TrainConfig, train
from stream.kafka import find_free_port
from tests.model.toy import toy_dataset, toy_stats
from tests.stream.helpers import TINY, make_events, offline_state, streams_of
from tests.stream.worker_harness import Deployment

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_NEW_ITEMS = 35  # v2 and v3: items i1..i35; v1 (and the events' items): i1..i30


def _publish(registry: Registry, version: str, n_items: int, seed: int, make_live: bool = True) -> None:
    data = toy_dataset(n_users=16, n_items=n_items, min_len=5, max_len=14, seed=seed, pattern=True)
    stats = toy_stats(data)
    torch.manual_seed(seed)
    model = build("difflsrec", data.sequences.n_items, stats, TINY)
    train(model, data, stats, TrainConfig(epochs=1, progress=False, device="cpu", seed=seed))

    def write(staging):
        save_artifact(staging, model, stats, data.sequences.item_ids, data_hash=data.hash, split="loo", version=version)
        build_index(model, data.sequences.item_ids, "flat").save(staging / "index")

    registry.publish(version, write, make_live=make_live)


def test_hot_swap_under_load(kafka_bootstrap, tmp_path):
    registry = Registry(tmp_path / "registry")
    _publish(registry, "v1", 30, seed=0)
    deployment = Deployment(kafka_bootstrap, registry.root, tmp_path, top_n=N_NEW_ITEMS, model_poll_interval=2.0)
    try:
        worker = deployment.start_worker("w1", find_free_port())
        events = make_events(n_users=10, per_user=60, seed=5)
        producing = deployment.produce_in_background(events, per_second=40)  # ~15 s of steady load

        time.sleep(4)
        _publish(registry, "v2", N_NEW_ITEMS, seed=1, make_live=False)  # only announced (LATEST stays v1):
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        # another registry's job announces on the same topic: not this worker's to serve (it used to swap to it)
        foreign = Registry(tmp_path / "another-registry")
        _publish(foreign, "x1", N_NEW_ITEMS, seed=3)
        producer.send(deployment.settings["model_updates_topic"], json.dumps({"version": "x1", "path": str(foreign.path_of("x1"))}).encode()).get(30)
        announced_at = time.time()
        producer.send(deployment.settings["model_updates_topic"], json.dumps({"version": "v2", "path": str(registry.path_of("v2"))}).encode()).get(30)
        producer.close()

        time.sleep(4)
        registry.set_latest("v2")  # LATEST catching up with the served version must not cause another swap
        time.sleep(3)
        registry_published_at = time.time()
        _publish(registry, "v3", N_NEW_ITEMS, seed=2)  # made live, not announced: found by polling LATEST

        producing.join(120)
        recs = deployment.collect({e["event_id"] for e in events}, timeout=120)
        missing = [e["event_id"] for e in events if not recs.get(e["event_id"])]
        assert not missing, (missing[:5], deployment.logs())

        # versions switch cleanly: within each partition, in offset order, v1* v2* v3* and never back
        by_partition: dict[int, list] = {}
        for rec in (r for rs in recs.values() for r in rs):
            by_partition.setdefault(rec.source.partition, []).append(rec)
        seen_versions = set()
        for partition_recs in by_partition.values():
            versions = [r.model_version for r in sorted(partition_recs, key=lambda r: r.source.offset)]
            assert versions == sorted(versions), versions
            seen_versions |= set(versions)
        assert seen_versions == {"v1", "v2", "v3"}, seen_versions
        first_v2 = min(r.emit_time for rs in recs.values() for r in rs if r.model_version == "v2")
        first_v3 = min(r.emit_time for rs in recs.values() for r in rs if r.model_version == "v3")
        assert first_v2 - announced_at < 30 and first_v3 - registry_published_at < 30

        # the new items are recommendable after the swap (lists hold every unseen item: top_n = catalogue)
        after = [r for rs in recs.values() for r in rs if r.model_version == "v3"]
        assert any(item.item_id in {f"i{k}" for k in range(31, N_NEW_ITEMS + 1)} for r in after for item in r.items)
        assert all(item.item_id in {f"i{k}" for k in range(1, 31)} for rs in recs.values() for r in rs if r.model_version == "v1" for item in r.items)

        # every user's state now belongs to v3 and equals the offline encoding of their history under v3
        v3 = load_artifact(registry.path_of("v3"))
        for stream in streams_of(events).values():
            status, state = worker.get(f"/state/{stream.user}")
            assert status == 200 and state["model_version"] == "v3"
            np.testing.assert_allclose(state["h"], offline_state(v3, stream.items, stream.times), atol=1e-4)

        totals = worker.metrics()
        assert totals['difflsrec_model_swaps_total{trigger="announcement"}'] == 1
        assert totals['difflsrec_model_swaps_total{trigger="registry"}'] == 1
        assert totals["difflsrec_model_updates_ignored_total"] == 1  # x1, never served (seen_versions above)
        assert totals["difflsrec_states_reencoded_total"] >= 10  # every user, at least once
        assert totals['difflsrec_model_info{version="v3"}'] == 1
    finally:
        deployment.close()
