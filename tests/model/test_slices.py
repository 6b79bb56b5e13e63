"""benchmarks/slices.py: equal-size groups that never split a value, and per-group means and paired tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from model.evaluation import EvalResult

spec = importlib.util.spec_from_file_location("slices", Path(__file__).resolve().parents[2] / "benchmarks" / "slices.py")
slices_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(slices_module)


def test_groups_are_about_equal_and_keep_ties_together():
    values = np.array([5, 1, 1, 1, 2, 9, 3, 3, 4, 1])
    groups = slices_module.slices(values, 4)
    members = [sorted(values[m].tolist()) for _, m in groups]
    assert members == [[1, 1, 1, 1], [2], [3, 3, 4], [5, 9]]  # the four 1s stay in one group (cut at 2.5 -> 4), every example once
    assert sorted(np.concatenate([m for _, m in groups]).tolist()) == list(range(10))
    assert [label for label, _ in groups] == ["1-1", "2-2", "3-4", "5-9"]
    assert len(slices_module.slices(np.zeros(7, dtype=int), 3)) == 1  # one value: one group


def test_sliced_means_and_paired_differences_per_group():
    users = np.arange(6)
    a = EvalResult(users, np.zeros(6), {"NDCG@10": np.array([1.0, 0.5, 0.0, 0.2, 0.4, 0.6])})
    b = EvalResult(users, np.zeros(6), {"NDCG@10": np.array([0.0, 0.5, 0.0, 0.3, 0.3, 0.6])})
    report = slices_module.sliced({"a": a, "b": b}, {"history": np.array([1, 1, 1, 2, 2, 2])}, bins=2)
    low, high = report["history"]
    assert (low["range"], low["n"], high["range"], high["n"]) == ("1-1", 3, "2-2", 3)
    assert low["mean"] == pytest.approx({"a": 0.5, "b": 1 / 6})
    assert high["mean"] == pytest.approx({"a": 0.4, "b": 0.4})
    assert low["diff"]["mean_diff"] == pytest.approx(1 / 3) and high["diff"]["mean_diff"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="same examples"):
        slices_module.sliced({"a": a, "b": EvalResult(users[::-1].copy(), b.ranks, b.per_example)}, {"history": np.ones(6)}, bins=2)
