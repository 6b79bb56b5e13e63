"""The two streaming benchmarks run end to end on small settings (their numbers are not asserted: a
benchmark is a script that prints numbers, and this machine's load varies); the summary's arithmetic is
checked on made-up results."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream.bench import BenchConfig, PhaseResult, replay_events, run_bench, summary_lines
from stream.bench_swap import SwapConfig, run_swap


def test_summary_gives_medians_and_the_ratio_pair_by_pair():
    def run(mode, rate, cpu):
        return PhaseResult(mode=mode, load="max", events=100, answered=100, seconds=1.0, events_per_s=rate, cpu_us_per_event=cpu)

    # three alternating pairs, as `--repeat 3` runs them
    results = [run("passthrough", 3000, 300), run("worker", 2400, 400), run("passthrough", 4000, 250), run("worker", 2000, 450),
               run("passthrough", 2000, 350), run("worker", 2200, 380)]
    head, pairs = summary_lines(results)
    assert head == "load   max: worker 2200 / pass-through 3000 events/s = 73 %; CPU 400 / 300 us per event (medians of 3 runs)"
    assert pairs.split(": ", 1)[1] == "80, 50, 110 % (median 80 %, range 50-110 %)"
    assert summary_lines(results[:2]) == ["load   max: worker 2400 / pass-through 3000 events/s = 80 %; CPU 400 / 300 us per event"]
    # with the pass-through that writes a table: each mode against the plain pass-through, and the worker against it
    with_table = results[:2] + [PhaseResult(mode="table", load="max", events=100, answered=100, seconds=1.0, events_per_s=2000, cpu_us_per_event=350)]
    assert summary_lines(with_table) == [
        "load   max: worker 2400 / pass-through 3000 events/s = 80 %; CPU 400 / 300 us per event",
        "load   max: pass-through with a table 2000 / pass-through 3000 events/s = 67 %; CPU 350 / 300 us per event",
        "load   max: worker 2400 / pass-through with a table 2000 events/s = 120 %; CPU 400 / 350 us per event",
    ]


def test_profile_gives_each_stage_and_each_gc_generation_per_event():
    from stream.bench import _profile

    stage = 'difflsrec_stage_cpu_seconds_total{stage="fuse"}'
    gc2 = 'difflsrec_gc_pause_seconds_sum{generation="2"}'
    before = {stage: 1.0, gc2: 0.5, "difflsrec_batch_size_count": 10, "difflsrec_batch_size_sum": 1000}
    after = {stage: 1.5, gc2: 0.6, 'difflsrec_gc_pause_seconds_count{generation="2"}': 7, "difflsrec_batch_size_count": 20, "difflsrec_batch_size_sum": 3000}
    stages, mean_batch = _profile(before, after, 1000)
    assert stages == pytest.approx({"fuse": 500.0, "gc2": 100.0})  # us per event; the pause count is not a time
    assert mean_batch == 200


def _decoded(events):
    return [json.loads(value) | {"key": key.decode()} for key, value in events]


def test_replay_in_time_order_and_interleaved(ml100k_file, isolated_home):
    timed = _decoded(replay_events(ml100k_file, 3000))
    assert [e["timestamp"] for e in timed] == sorted(e["timestamp"] for e in timed)
    assert all(e["key"] == e["user_id"] for e in timed)

    mixed = _decoded(replay_events(ml100k_file, 3000, interleave=50))
    assert [e["event_id"] for e in mixed] == [f"b{n}" for n in range(3000)]
    by_user: dict[str, list[dict]] = {}
    for e in mixed:
        by_user.setdefault(e["user_id"], []).append(e)
    # 50 users at a time, one event each in turn: any 50 consecutive events come from 50 users (until the
    # last users run out of events); each user's own events stay in their time order
    assert all(len({e["user_id"] for e in mixed[i : i + 50]}) == 50 for i in range(0, 2500, 50))
    for events in by_user.values():
        assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    # a user's first events of the full replay, in the same order (ties in time included)
    everything = _decoded(replay_events(ml100k_file))
    history = {}
    for e in everything:
        history.setdefault(e["user_id"], []).append((e["timestamp"], e["item_id"]))
    for user, events in by_user.items():
        assert [(e["timestamp"], e["item_id"]) for e in events] == history[user][: len(events)]
    # one user at a time: each user's whole history in a row
    serial = _decoded(replay_events(ml100k_file, 600, interleave=1))
    changes = sum(a["user_id"] != b["user_id"] for a, b in zip(serial, serial[1:]))
    assert changes == len({e["user_id"] for e in serial}) - 1
    with pytest.raises(ValueError, match="interleave"):
        replay_events(ml100k_file, 10, interleave=0)


def test_latency_segments_by_hand():
    """Each hop of each event from its four times (ms); the pass-through (no emit time) has no to_emit, and
    its to_produce starts at the send."""
    from types import SimpleNamespace

    from stream.bench import latency_segments

    sent = {1: 10.0, 2: 20.0, 3: 30.0}
    collector = SimpleNamespace(emitted={1: 10.010, 2: 20.030, 3: 30.020}, produced={1: 10.012, 2: 20.031, 3: 30.060}, received={1: 10.015, 2: 20.041, 3: 30.061})
    hops = latency_segments(collector, sent, [1, 2, 3])
    expected = {"to_emit": [10, 30, 20], "to_produce": [2, 1, 40], "to_receive": [3, 10, 1], "total": [15, 41, 61]}
    for hop, values in expected.items():
        assert hops[hop]["p50"] == pytest.approx(float(np.median(values)), abs=1e-6), hop
        assert hops[hop]["max"] == pytest.approx(max(values), abs=1e-6), hop
        assert hops[hop]["p99"] == pytest.approx(float(np.percentile(values, 99)), abs=1e-6), hop
    passthrough = latency_segments(SimpleNamespace(emitted={}, produced=collector.produced, received=collector.received), sent, [1, 2])
    assert set(passthrough) == {"to_produce", "to_receive", "total"}
    assert passthrough["to_produce"]["max"] == pytest.approx(31.0, abs=1e-6)  # send -> output record, 12 and 31 ms


@pytest.mark.kafka
@pytest.mark.slow
def test_bench_stream_measures_worker_and_passthrough(kafka_bootstrap, tiny_artifact_dir, ml100k_file, isolated_home, tmp_path):
    out = tmp_path / "bench.json"
    cfg = BenchConfig(
        artifact=tiny_artifact_dir, ratings=ml100k_file, loads=["100", "max"], seconds=3, warmup=1, backlog=600, bootstrap=kafka_bootstrap, partitions=2,
        trace_dir=tmp_path / "trace", modes=("passthrough", "table", "worker"),
    )
    results = run_bench(cfg, out)
    assert {(r.mode, r.load) for r in results} == {(m, load) for m in ("worker", "passthrough", "table") for load in ("100", "max")}
    for r in results:
        assert r.answered == r.events, r  # every offered event came out
        assert r.events_per_s > 0
    paced_worker = next(r for r in results if r.mode == "worker" and r.load == "100")
    assert 0 < paced_worker.p50_ms <= paced_worker.p99_ms
    assert paced_worker.stages_us_per_event["parse"] > 0  # the profile comes from the worker's /metrics
    # where the latency goes: the worker's hops add up to the total; the pass-through has no emit time
    hops = paced_worker.segments_ms
    assert set(hops) == {"to_emit", "to_produce", "to_receive", "total"}
    assert hops["total"]["p50"] == pytest.approx(paced_worker.p50_ms)
    assert hops["to_emit"]["p50"] + hops["to_produce"]["p50"] + hops["to_receive"]["p50"] == pytest.approx(hops["total"]["p50"], rel=0.5)
    assert set(next(r for r in results if r.mode == "passthrough" and r.load == "100").segments_ms) == {"to_produce", "to_receive", "total"}
    assert paced_worker.bench_cpu_us_per_event > 0 and paced_worker.broker_cpu_us_per_event is None  # external broker: not ours to measure
    trace = np.load(tmp_path / "trace" / "worker-100.npz")
    assert len(trace["sent"]) == paced_worker.events == 300
    assert np.all(trace["sent"] <= trace["emitted"]) and np.all(trace["emitted"] <= trace["received"])
    assert len(json.loads(out.read_text())["results"]) == 6


@pytest.mark.kafka
@pytest.mark.slow
def test_bench_swap_measures_latency_around_a_hot_swap(kafka_bootstrap, tiny_artifact_dir, ml100k_file, isolated_home, tmp_path):
    report = run_swap(SwapConfig(artifact=tiny_artifact_dir, ratings=ml100k_file, rate=100, seconds=10, warmup=1, partitions=2, bootstrap=kafka_bootstrap), tmp_path)
    assert report["answered"] == report["events"] == 1000 and report["complete"]
    assert report["versions_seen"] == ["swap-a", "swap-b"]  # the swap happened while events flowed
    assert report["load_off_event_path_s"] > 0
    # windows by send time from the publication's start and from the switch (the first event the new version served)
    assert list(report["windows"]) == ["before publication (10 s)", "publication to switch", "switch (0-2 s)", "after (2-10 s)"]
    assert report["windows"]["switch (0-2 s)"]["events"] > 0 and report["publication_started_to_switch_s"] > 0
    assert (tmp_path / "swap_latency.png").stat().st_size > 0
    assert json.loads((tmp_path / "swap.json").read_text())["versions_seen"] == ["swap-a", "swap-b"]


def test_swap_windows_start_at_the_publication_and_at_the_switch():
    from stream.bench_swap import windows

    w = windows(publish_started=100.0, switch=101.5)
    assert w == {"before publication (10 s)": (90.0, 100.0), "publication to switch": (100.0, 101.5), "switch (0-2 s)": (101.5, 103.5), "after (2-10 s)": (103.5, 111.5)}
