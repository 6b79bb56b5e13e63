"""Prequential replay metrics on a tiny hand-written history, computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bootstrap.replay import latency_summary, prequential_metrics, rank_in_list, window_metrics, write_report


def test_hand_computed_history():
    # user a: first event has no list; then the list [x, y, z] came back; event y is at rank 1 (hit)
    # user b: list [p, q]; event r misses; then list [r, s]; event s hits at rank 1; event r hits at rank 0
    events = [
        ("a", "x", None),
        ("a", "y", ["x", "y", "z"]),
        ("b", "r", ["p", "q"]),
        ("b", "s", ["r", "s"]),
        ("b", "r", ["r", "s"]),
        ("a", "w", ["x", "y", "z"]),
    ]
    ranks = [rank_in_list(item, lst, k=10) for _, item, lst in events]
    assert ranks == [None, 1, -1, 1, 0, -1]
    m = prequential_metrics(ranks)
    hits_ndcg = 1 / math.log2(3) + 1 / math.log2(3) + 1.0
    hits_mrr = 0.5 + 0.5 + 1.0
    assert m["share_with_list"] == pytest.approx(5 / 6)
    assert m["all_events"]["HR"] == pytest.approx(3 / 6) and m["events_with_list"]["HR"] == pytest.approx(3 / 5)
    assert m["all_events"]["NDCG"] == pytest.approx(hits_ndcg / 6) and m["events_with_list"]["NDCG"] == pytest.approx(hits_ndcg / 5)
    assert m["all_events"]["MRR"] == pytest.approx(hits_mrr / 6) and m["events_with_list"]["MRR"] == pytest.approx(hits_mrr / 5)


def test_cutoff_k_and_windows():
    assert rank_in_list("c", ["a", "b", "c"], k=2) == -1
    assert rank_in_list("b", ["a", "b", "c"], k=2) == 1
    ranks = [None, 0, -1, 0]
    w = window_metrics(np.array([10, 20, 30, 40]), ranks, windows=2)
    assert [x["start"] for x in w] == [10, 30] and [x["end"] for x in w] == [20, 40]
    assert w[0]["all_events"]["HR"] == 0.5 and w[0]["share_with_list"] == 0.5
    assert w[1]["all_events"]["HR"] == 0.5 and w[1]["events_with_list"]["HR"] == 0.5


def test_latency_summary_and_report_files(tmp_path):
    s = latency_summary([float(x) for x in range(1, 101)])
    assert s["n"] == 100 and s["p50"] == pytest.approx(50.5) and s["max"] == 100
    report = {
        "k": 10, "n_events": 4, "n_users": 2, "windows": window_metrics(np.array([1, 2, 3, 4]), [None, 0, -1, 0], 2),
        "latency_ms": s, "latency_histogram_ms": {"edges": [0.0, 50.0, 100.0], "counts": [50, 50]},
    }
    write_report(report, tmp_path)
    assert json.loads((tmp_path / "replay.json").read_text())["n_events"] == 4
    for png in ("metrics_over_time.png", "latency_hist.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
