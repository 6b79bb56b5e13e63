"""The publication gate: the paired relative rule on per-user scores, and the live model scored in its own
vocabulary on the candidate's validation examples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from bootstrap.gate import GateRule, decide, in_vocabulary_of, live_validation_scores
from model.artifact import load_artifact
from model.batching import FeatureView
from model.data.dataset import PreparedDataset, Sequences, Split
from model.evaluation import evaluate
from tests.model.toy import toy_dataset
from tests.stream.helpers import N_ITEMS


def _scores(rng, n, level, noise):
    """Per-user NDCG-like scores: ``level`` on average, ``noise`` user-to-user spread, clipped to [0, 1]."""
    return np.clip(level + noise * rng.standard_normal(n), 0.0, 1.0)


def test_the_p_value_is_scipys_one_sided_paired_t_test_against_the_threshold():
    rng = np.random.default_rng(0)
    live = _scores(rng, 500, 0.2, 0.2)
    candidate = np.clip(live * 0.9 + 0.05 * rng.standard_normal(500), 0, 1)
    for rule in (GateRule(0.05, 0.05), GateRule(0.0, 0.05), GateRule(-0.1, 0.01)):
        d = decide(candidate, live, rule)
        expected = stats.ttest_rel(candidate, (1 - rule.tolerance) * live, alternative="less").pvalue
        assert d.p_value == pytest.approx(expected, rel=1e-9)
        assert d.threshold == pytest.approx((1 - rule.tolerance) * live.mean())
        assert d.candidate == pytest.approx(candidate.mean()) and d.live == pytest.approx(live.mean()) and d.n == 500


def test_a_clear_shortfall_is_refused_and_the_same_model_is_published():
    rng = np.random.default_rng(1)
    live = _scores(rng, 2000, 0.17, 0.25)
    same = decide(live.copy(), live, GateRule())
    assert same.publish and same.p_value == 1.0  # no difference at all: no noise, nothing below the threshold
    worse = live * np.where(rng.random(2000) < 0.3, 0.0, 1.0)  # 30 % of the hits lost: ~30 % below the live mean
    d = decide(worse, live, GateRule(tolerance=0.05, alpha=0.05))
    assert not d.publish and d.p_value < 1e-6 and "below the threshold" in d.reason()


def test_the_tolerance_is_relative_to_the_live_level():
    """The same 3 % shortfall is allowed under a 5 % tolerance on a dense dataset and a sparse one alike (an
    absolute 0.01 allowance would be 6 % of the first and 40 % of the second)."""
    rng = np.random.default_rng(2)
    for level in (0.17, 0.025):
        live = _scores(rng, 20000, level, 0.1 * level)
        candidate = live * 0.97
        assert decide(candidate, live, GateRule(tolerance=0.05)).publish
        assert not decide(candidate, live, GateRule(tolerance=0.0)).publish  # 3 % below, 20,000 users: significant
        assert not decide(candidate, live, GateRule(tolerance=0.02)).publish


def test_a_shortfall_within_the_noise_of_few_users_is_published_unless_alpha_is_1():
    rng = np.random.default_rng(3)
    live = (rng.random(40) < 0.3).astype(float)  # 40 users, hit or miss: a very noisy mean
    candidate = live.copy()
    candidate[np.flatnonzero(live)[:2]] = 0.0  # two hits fewer: the mean drops by ~17 %, on 2 users of 40
    candidate[np.flatnonzero(live == 0)[:1]] = 1.0  # and one gained
    d = decide(candidate, live, GateRule(tolerance=0.05, alpha=0.05))
    assert candidate.mean() < d.threshold and d.publish and d.p_value > 0.05
    assert not decide(candidate, live, GateRule(tolerance=0.05, alpha=1.0)).publish  # the means alone refuse it


def test_a_negative_tolerance_demands_an_improvement():
    rng = np.random.default_rng(4)
    live = _scores(rng, 5000, 0.1, 0.1)
    candidate = live * 1.05
    assert decide(candidate, live, GateRule(tolerance=-0.02)).publish
    assert not decide(candidate, live, GateRule(tolerance=-0.5)).publish


def test_edge_cases_and_bad_rules():
    assert decide(np.zeros(0), np.zeros(0), GateRule()).publish  # no validation examples: nothing to gate on
    one = decide(np.array([0.0]), np.array([1.0]), GateRule())  # one example: no evidence of a spread
    assert one.publish and one.p_value == 1.0
    assert not decide(np.array([0.0]), np.array([1.0]), GateRule(alpha=1.0)).publish
    assert not decide(np.zeros(5), np.full(5, 0.5), GateRule()).publish  # the same loss on every user: certain
    with pytest.raises(ValueError, match="same examples"):
        decide(np.zeros(3), np.zeros(4), GateRule())
    for bad in ({"tolerance": 1.5}, {"alpha": 0.0}, {"alpha": 1.2}):
        with pytest.raises(ValueError):
            GateRule(**bad)


def _two_users() -> PreparedDataset:
    """u0: a b c d (valid target c at 2, test d at 3); u1: x a b e (valid b at 2, test e at 3)."""
    seq = Sequences(np.array(["u0", "u1"]), np.array(["<pad>", "a", "b", "c", "d", "x", "e"]), np.array([0, 4, 8]),
                    np.array([1, 2, 3, 4, 5, 1, 2, 6]), np.arange(8, dtype=np.int64) * 10)
    split = Split("loo", np.array([2, 2]), np.array([[0, 2], [1, 2]]), np.array([[0, 3], [1, 3]]))
    return PreparedDataset(seq, split, {"hash": "two"})


def test_in_vocabulary_of_drops_unknown_items_and_masks_unknown_targets():
    mapped, known = in_vocabulary_of(_two_users(), ["<pad>", "b", "a", "d", "e"])  # no c, no x; another order
    s = mapped.sequences
    assert list(s.offsets) == [0, 3, 6]
    assert [s.item_ids[i] for i in s.items] == ["a", "b", "d", "a", "b", "e"]
    assert list(s.times) == [0, 10, 30, 50, 60, 70]  # each kept item keeps its time
    assert known.tolist() == [False, True]  # u0's validation target c is unknown: a miss for the live model
    assert mapped.split.valid.tolist() == [[1, 1]]  # u1's b moved from position 2 to 1 (x dropped)
    assert mapped.split.test.tolist() == [[0, 2], [1, 2]]
    assert mapped.split.train_len.tolist() == [2, 1]


def test_live_scores_are_those_of_each_validation_example_in_its_place(tiny_artifact_dir):
    """The gate pairs the candidate's and the live model's scores example by example. ``evaluate`` used to
    return them in its batching order (by history length), and the live side, whose histories lose the items
    its vocabulary lacks, came back in another one: the paired test compared different users' scores (a
    candidate at 0.8x the live model on every user passed it). Each example evaluated alone must score the same."""
    live = load_artifact(tiny_artifact_dir)
    data = toy_dataset(n_users=16, n_items=N_ITEMS, min_len=5, max_len=14, seed=0, pattern=True)
    seq = data.sequences
    targets = set(seq.items[seq.offsets[data.split.valid[:, 0]] + data.split.valid[:, 1]].tolist())
    renamed = seq.item_ids.copy()
    for item in [i for i in range(1, seq.n_items + 1) if i not in targets][:3]:  # history items only
        renamed[item] = f"new-{item}"
    changed = dataclasses.replace(data, sequences=dataclasses.replace(seq, item_ids=renamed))
    scores = live_validation_scores(live, changed)
    mapped, known = in_vocabulary_of(changed, live.item_ids)
    features = FeatureView.build(mapped, live.stats)
    alone = [evaluate(live.model, mapped, features, mapped.split.valid[i : i + 1]).per_example["NDCG@10"][0] for i in range(len(mapped.split.valid))]
    assert known.all() and np.allclose(scores, alone) and scores.sum() > 0
    # and the candidate side (bootstrap.job): evaluate's values are in the order of the examples given
    direct = evaluate(live.model, data, FeatureView.build(data, live.stats), data.split.valid)
    assert np.array_equal(direct.users, data.split.valid[:, 0])


def test_live_scores_equal_the_evaluator_in_the_same_vocabulary_and_are_0_for_unknown_targets(tiny_artifact_dir):
    live = load_artifact(tiny_artifact_dir)
    data = toy_dataset(n_users=16, n_items=N_ITEMS, min_len=5, max_len=14, seed=0, pattern=True)  # the artifact's own data
    scores = live_validation_scores(live, data)
    direct = evaluate(live.model, data, FeatureView.build(data, live.stats), data.split.valid).per_example["NDCG@10"]
    assert scores.shape == (16,) and np.allclose(scores, direct) and scores.sum() > 0
    # the same data after the catalogue renamed an item the live model knows: it cannot score that target
    renamed = data.sequences.item_ids.copy()
    seq = data.sequences
    target_items = seq.items[seq.offsets[data.split.valid[:, 0]] + data.split.valid[:, 1]]
    item = int(target_items[np.argmax(direct > 0)])  # a target the live model ranks in its top 10
    renamed[item] = "brand-new"
    changed = dataclasses.replace(data, sequences=dataclasses.replace(seq, item_ids=renamed))
    after = live_validation_scores(live, changed)
    assert np.all(after[target_items == item] == 0) and np.any(direct[target_items == item] > 0)
