"""Full-ranking metrics against hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.evaluation import EvalResult, paired_test, rank_metrics, target_ranks


def test_rank_metrics_by_hand():
    m = rank_metrics(np.array([0, 1, 9, 10, 500]), k=10)
    assert m["HR@10"].tolist() == [1, 1, 1, 0, 0]
    assert np.allclose(m["NDCG@10"], [1.0, 1 / math.log2(3), 1 / math.log2(11), 0, 0])
    assert np.allclose(m["MRR@10"], [1.0, 0.5, 0.1, 0, 0])
    assert np.allclose(m["Precision@10"], [0.1, 0.1, 0.1, 0, 0])


def test_target_ranks_full_catalogue_with_seen_filtering():
    # 6 items (columns 1..6), column 0 is padding
    scores = torch.tensor([
        [9.0, 0.1, 0.9, 0.5, 0.7, 0.3, 0.2],  # target 3 (0.5): items 2 (0.9) and 4 (0.7) score higher -> rank 2
        [9.0, 0.1, 0.9, 0.5, 0.7, 0.3, 0.2],  # same, but items 2 and 4 were seen -> rank 0
        [0.0, 0.1, 0.9, 0.5, 0.7, 0.3, 0.2],  # target 2 was itself seen -> can never be hit
    ])
    targets = torch.tensor([3, 3, 2])
    seen = [np.array([], np.int64), np.array([2, 4]), np.array([2, 5])]
    ranks = target_ranks(scores, targets, seen)
    assert ranks.tolist()[:2] == [2, 0]
    assert ranks[2] >= 6
    assert target_ranks(scores, targets, None).tolist() == [2, 2, 0]  # padding column never counts
    # K larger than the catalogue: every ranked target is a hit, the excluded one still is not
    assert rank_metrics(ranks.numpy(), 10)["HR@10"].tolist() == [1.0, 1.0, 0.0]


def test_ties_count_against_the_model():
    scores = torch.zeros(1, 11)
    assert target_ranks(scores, torch.tensor([4]), None).item() == 9  # every other real item ties


def test_bootstrap_ci_and_paired_test():
    rng = np.random.default_rng(0)
    users = np.arange(400)
    ra, rb = rng.integers(0, 5, 400), rng.integers(0, 40, 400)
    a = EvalResult(users, ra, rank_metrics(ra, 10))
    b = EvalResult(users[::-1].copy(), rb[::-1].copy(), {k: v[::-1].copy() for k, v in rank_metrics(rb, 10).items()})
    lo, hi = a.bootstrap_ci()["NDCG@10"]
    assert lo < a.mean()["NDCG@10"] < hi
    test = paired_test(a, b, "NDCG@10")
    assert test["mean_diff"] > 0 and test["t_pvalue"] < 1e-6
    with pytest.raises(ValueError):
        paired_test(a, EvalResult(users[:10], ra[:10], rank_metrics(ra[:10], 10)), "NDCG@10")


def test_sampled_protocol_ranks_among_unseen_negatives_only():
    # 8 items; scores increase with the id; target 5; history {6, 7}
    scores = torch.tensor([[float("-inf")] + [float(i) for i in range(1, 9)]])
    rng = np.random.default_rng(0)
    from model.evaluation import sampled_ranks

    # only item 8 outranks the target among unseen items (6 and 7 are seen) -> rank 1 when 8 is drawn
    ranks = [sampled_ranks(scores, torch.tensor([5]), [np.array([6, 7])], 5, rng).item() for _ in range(50)]
    assert set(ranks) <= {0, 1} and 1 in ranks
    # fewer unseen items (5) than negatives asked for (20): each unseen item once, so item 8 counts once (drawn
    # with replacement it counted ~4 times: a small catalogue looked harder under sampling than under full ranking)
    r = sampled_ranks(scores, torch.tensor([5]), [np.array([6, 7])], 20, rng).item()
    assert r == 1
    two = sampled_ranks(torch.cat([scores, scores]), torch.tensor([5, 2]), [np.array([6, 7]), np.array([], dtype=np.int64)], 20, rng)
    assert two.tolist() == [1, 6]  # the second user: 3..8 above target 2, each once (7 unseen, all ranked)
    # the full-ranking rank with seen filtering is 1 (only item 8 is above); sampled can only be <= full
    assert target_ranks(scores, torch.tensor([5]), [np.array([6, 7])]).item() == 1


def test_benchmark_significance_uses_every_seed_per_user():
    """`benchmark --seeds N`: the paired test compares each user's value averaged over the seeds (users listed in
    a different order in every run), not the first seed alone."""
    from model.benchmark import ModelRun, significance

    def run(model, seed, users, ndcg):
        users, ndcg = np.array(users), np.array(ndcg, dtype=float)
        return ModelRun(model, seed, EvalResult(users=users, ranks=np.zeros(len(users)), per_example={"NDCG@10": ndcg}), {}, 1, 1, 0.0, [], {})

    runs = {
        "difflsrec": [run("difflsrec", 0, [1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0]), run("difflsrec", 1, [4, 3, 2, 1], [1.0, 1.0, 0.8, 0.6])],
        "sasrec": [run("sasrec", 0, [1, 2, 3, 4], [0.1, 0.2, 0.1, 0.2]), run("sasrec", 1, [2, 1, 4, 3], [0.2, 0.1, 0.2, 0.1])],
        "pop": [run("pop", 0, [1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0]), run("pop", 1, [1, 2, 3, 4], [0.0, 0.0, 0.0, 0.0])],
    }
    tests = significance(runs)
    assert list(tests) == ["difflsrec_vs_sasrec", "difflsrec_vs_pop"]  # every other model, the best first
    assert tests["difflsrec_vs_pop"]["mean_diff"] == pytest.approx(np.mean([0.3, 0.4, 0.5, 0.5]))
    test = tests["difflsrec_vs_sasrec"]
    # per user, seed means: ours (0.3, 0.4, 0.5, 0.5), SASRec's (0.1, 0.2, 0.1, 0.2); seed 0 alone would give -0.15
    assert test["seeds"] == [0, 1]
    assert test["mean_diff"] == pytest.approx(np.mean([0.2, 0.2, 0.4, 0.3]))
    expected = paired_test(EvalResult(np.array([1, 2, 3, 4]), np.zeros(4), {"NDCG@10": np.array([0.3, 0.4, 0.5, 0.5])}), EvalResult(np.array([1, 2, 3, 4]), np.zeros(4), {"NDCG@10": np.array([0.1, 0.2, 0.1, 0.2])}), "NDCG@10")
    assert test["t_pvalue"] == pytest.approx(expected["t_pvalue"])


def test_a_benchmark_folder_of_another_dataset_is_refused_before_anything_in_it_is_overwritten(tmp_path):
    from model.benchmark import run_benchmark
    from model.training import TrainConfig
    from tests.model.toy import toy_dataset

    first = run_benchmark(toy_dataset(seed=0), ["pop"], tmp_path, [0], TrainConfig(epochs=1, progress=False), save_models=False)
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(ValueError, match=r"holds results on another dataset \(toy-0-False; these options and files give toy-1-False\)"):
        run_benchmark(toy_dataset(seed=1), ["pop", "gru4rec"], tmp_path, [0], TrainConfig(epochs=1, progress=False), save_models=False)
    assert (tmp_path / "results.json").read_text() == before and first["data_hash"] == "toy-0-False"
    again = run_benchmark(toy_dataset(seed=0), ["pop"], tmp_path, [0], TrainConfig(epochs=1, progress=False), save_models=False)
    assert again["results"]["pop"]["NDCG@10"] == first["results"]["pop"]["NDCG@10"]  # the same data goes on in the same folder


def test_evaluate_returns_values_in_the_order_of_the_examples():
    """Batches go by history length; the values come back in the order the examples were given."""
    from model.batching import FeatureView
    from model.evaluation import evaluate
    from model.registry import build
    from tests.model.toy import toy_dataset, toy_stats

    data = toy_dataset(n_users=12, n_items=15, min_len=4, max_len=12, seed=3)
    stats = toy_stats(data)
    torch.manual_seed(0)
    model = build("gru4rec", data.sequences.n_items, stats, {"d": 8})
    features = FeatureView.build(data, stats)
    examples = data.split.test[::-1].copy()  # users in reverse, lengths unsorted
    assert not np.all(np.diff(examples[:, 1]) >= 0)
    result = evaluate(model, data, features, examples)
    assert np.array_equal(result.users, examples[:, 0])
    alone = [evaluate(model, data, features, examples[i : i + 1]) for i in range(len(examples))]
    assert result.ranks.tolist() == [r.ranks[0] for r in alone]
    assert result.per_example["NDCG@10"].tolist() == [r.per_example["NDCG@10"][0] for r in alone]


def test_the_reported_interval_resamples_users_not_user_seed_pairs():
    """summarise's 95 % interval: with several seeds each user counts once (its values averaged over the seeds),
    as in the paired tests. Pooling the seeds' copies of a user made it ~sqrt(seeds) too narrow: five identical
    seeds gave 0.4x the one-seed width."""
    from model.benchmark import ModelRun, summarise

    rng = np.random.default_rng(0)
    users = np.arange(300)
    ranks = rng.integers(0, 40, size=300)
    run = lambda seed: ModelRun("m", seed, EvalResult(users, ranks, rank_metrics(ranks, 10)), {}, 1, 1, 1.0, [1.0], {})  # noqa: E731
    one, five = summarise([run(0)]), summarise([run(s) for s in range(5)])
    assert five["ci95"]["NDCG@10"] == pytest.approx(one["ci95"]["NDCG@10"])
    low, high = one["ci95"]["NDCG@10"]
    assert low < one["NDCG@10"] < high
