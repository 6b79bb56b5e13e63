"""The two streaming benchmarks run end to end on small settings (their numbers are not asserted: a
benchmark is a script that prints numbers, and this machine's load varies)."""

from __future__ import annotations

import json

import pytest

from stream.bench import BenchConfig, run_bench
from stream.bench_swap import SwapConfig, run_swap

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_bench_stream_measures_worker_and_passthrough(kafka_bootstrap, tiny_artifact_dir, ml100k_file, isolated_home, tmp_path):
    out = tmp_path / "bench.json"
    cfg = BenchConfig(artifact=tiny_artifact_dir, ratings=ml100k_file, loads=["100", "max"], seconds=3, warmup=1, backlog=600, bootstrap=kafka_bootstrap, partitions=2)
    results = run_bench(cfg, out)
    assert {(r.mode, r.load) for r in results} == {(m, load) for m in ("worker", "passthrough") for load in ("100", "max")}
    for r in results:
        assert r.answered == r.events, r  # every offered event came out
        assert r.events_per_s > 0
    paced_worker = next(r for r in results if r.mode == "worker" and r.load == "100")
    assert 0 < paced_worker.p50_ms <= paced_worker.p99_ms
    assert paced_worker.stages_us_per_event["parse"] > 0  # the profile comes from the worker's /metrics
    assert len(json.loads(out.read_text())["results"]) == 4


def test_bench_swap_measures_latency_around_a_hot_swap(kafka_bootstrap, tiny_artifact_dir, ml100k_file, isolated_home, tmp_path):
    report = run_swap(SwapConfig(artifact=tiny_artifact_dir, ratings=ml100k_file, rate=100, seconds=10, warmup=1, partitions=2, bootstrap=kafka_bootstrap), tmp_path)
    assert report["answered"] == report["events"] == 1000 and report["complete"]
    assert report["versions_seen"] == ["swap-a", "swap-b"]  # the swap happened while events flowed
    assert report["load_off_event_path_s"] > 0
    assert report["windows"]["swap (0-2 s)"]["events"] > 0
    assert (tmp_path / "swap_latency.png").stat().st_size > 0
    assert json.loads((tmp_path / "swap.json").read_text())["versions_seen"] == ["swap-a", "swap-b"]
