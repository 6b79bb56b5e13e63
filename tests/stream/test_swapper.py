"""The registry poll of the hot swap (stream/hotswap.py), without Kafka: a real registry, real artifacts and
indexes, the worker reduced to what the swapper reads (settings, metrics, the engine's bundle)."""

from __future__ import annotations

import asyncio
import types

import pytest
import torch

from bootstrap.job import build_index
from bootstrap.registry import Registry
from model.artifact import save_artifact
from model.registry import build
from model.training import TrainConfig, train
from stream.engine import ModelBundle
from stream.hotswap import ModelSwapper
from stream.metrics import WorkerMetrics
from tests.model.toy import toy_dataset, toy_stats
from tests.stream.helpers import N_ITEMS, TINY


@pytest.fixture(scope="module")
def trained():
    data = toy_dataset(n_users=16, n_items=N_ITEMS, min_len=5, max_len=14, seed=0, pattern=True)
    stats = toy_stats(data)
    torch.manual_seed(0)
    model = build("difflsrec", data.sequences.n_items, stats, TINY)
    train(model, data, stats, TrainConfig(epochs=1, progress=False, device="cpu"))
    return model, stats, data


def publish(registry: Registry, trained, version: str, make_live: bool = True) -> None:
    model, stats, data = trained

    def write(staging):
        save_artifact(staging, model, stats, data.sequences.item_ids, data_hash=data.hash, split="loo", version=version)
        build_index(model, data.sequences.item_ids, "flat").save(staging / "index")

    registry.publish(version, write, make_live=make_live)


def worker_serving(root, version: str, poll_interval: float = 5.0):
    bundle = ModelBundle.load(root / "versions" / version)
    settings = types.SimpleNamespace(artifact=root, registry_dir=root, inference_steps=None, index_kind="flat", model_poll_interval=poll_interval)
    return types.SimpleNamespace(settings=settings, metrics=WorkerMetrics(), engine=types.SimpleNamespace(bundle=bundle))


def test_a_version_published_while_the_worker_started_is_swapped_to(tmp_path, trained):
    """LATEST moved to v2 after the worker loaded v1 and before its swapper existed: the first poll swaps (it
    used to take v2 as already seen and serve v1 until LATEST moved again)."""
    registry = Registry(tmp_path)
    publish(registry, trained, "v1")
    worker = worker_serving(tmp_path, "v1")
    publish(registry, trained, "v2")
    swapper = ModelSwapper(worker, "cpu")
    asyncio.run(swapper.poll_registry())
    assert worker.engine.bundle.version == "v2" and [s["trigger"] for s in swapper.swaps] == ["registry"]


def test_a_version_that_failed_to_load_is_tried_again_later(tmp_path, trained, monkeypatch):
    """One failed load (a transient error) no longer leaves the worker on the old version for good: the poll
    tries again after the poll interval, then doubles the wait while it keeps failing."""
    registry = Registry(tmp_path)
    publish(registry, trained, "v1")
    worker = worker_serving(tmp_path, "v1", poll_interval=5.0)
    swapper = ModelSwapper(worker, "cpu")
    publish(registry, trained, "v2")
    real_load, attempts = swapper._load, []

    def flaky(path):
        attempts.append(path.name)
        if len(attempts) <= 2:
            raise OSError("transient")
        return real_load(path)

    swapper._load = flaky
    clock = [1000.0]
    monkeypatch.setattr("stream.hotswap.time.monotonic", lambda: clock[0])

    async def polls():
        await swapper.poll_registry()  # fails: next try in 5 s
        await swapper.poll_registry()  # too soon: not tried
        clock[0] += 5
        await swapper.poll_registry()  # fails again: next try in 10 s
        clock[0] += 9
        await swapper.poll_registry()  # too soon
        clock[0] += 1
        await swapper.poll_registry()  # loads

    asyncio.run(polls())
    assert attempts == ["v2", "v2", "v2"] and worker.engine.bundle.version == "v2"
    assert worker.metrics.swap_failures._value.get() == 2 and swapper.failed == {} and swapper.last_latest == "v2"


def test_an_announced_version_is_not_swapped_back_by_the_poll(tmp_path, trained):
    """The rule the poll keeps: a version swapped to on its announcement, not LATEST yet, stays served."""
    registry = Registry(tmp_path)
    publish(registry, trained, "v1")
    worker = worker_serving(tmp_path, "v1")
    swapper = ModelSwapper(worker, "cpu")
    publish(registry, trained, "v2", make_live=False)

    async def steps():
        assert await swapper.consider(tmp_path / "versions" / "v2", "v2") == "swapped"
        assert await swapper.consider(tmp_path / "versions" / "v2", "v2") == "served"
        await swapper.poll_registry()

    asyncio.run(steps())
    assert worker.engine.bundle.version == "v2" and len(swapper.swaps) == 1
