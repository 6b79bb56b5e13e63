"""Full-catalogue ranking evaluation: every item is a candidate, no sampled negatives.

For each example the rank of the target is the number of *other* candidate items scoring at least as
high (ties count against the model, so a constant scorer cannot look good). Items the user already
interacted with are removed from the candidates by default (``filter_seen``), the target included when it
is a repeat: a recommender that never re-recommends seen items cannot hit such a target, and the streaming
worker filters the same way. Per-example values are kept so results carry bootstrap confidence intervals
and paired significance tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from model.batching import FeatureView, eval_batches, eval_order
from model.data.dataset import PreparedDataset

log = logging.getLogger(__name__)

METRICS = ("HR", "NDCG", "MRR", "Precision")
# the rank of a target that cannot be ranked (excluded as seen): beyond any K, so never a hit even when K is
# larger than the catalogue (a rank of n_items was a hit for K > n_items)
UNRANKED = 2**62


def rank_metrics(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """0-based ranks (any int array; a huge value means 'not ranked') -> per-example HR/NDCG/MRR/Precision@k."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < k
    return {
        f"HR@{k}": hit.astype(np.float64),
        f"NDCG@{k}": np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0),
        f"MRR@{k}": np.where(hit, 1.0 / (ranks + 1.0), 0.0),
        f"Precision@{k}": hit / k,
    }


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: list[np.ndarray] | None) -> torch.Tensor:
    """scores (B, n_items + 1) with column 0 = padding; targets (B,) dense ids; seen: per-row item ids to
    exclude. Returns 0-based ranks (B,); a target excluded as seen gets rank :data:`UNRANKED` (never a hit)."""
    scores = scores.float().clone()
    scores[:, 0] = float("-inf")
    if seen is not None:
        rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
        cols = np.concatenate(seen) if len(seen) else np.zeros(0, np.int64)
        scores[torch.as_tensor(rows), torch.as_tensor(cols, dtype=torch.long)] = float("-inf")
    target_scores = scores.gather(1, targets.view(-1, 1))
    ranks = (scores >= target_scores).sum(1) - 1
    return torch.where(torch.isfinite(target_scores.squeeze(1)), ranks, torch.full_like(ranks, UNRANKED))


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, seen: list[np.ndarray], n_negatives: int, rng: np.random.Generator) -> torch.Tensor:
    """The sampled protocol (e.g. SASRec's paper, and most likely DiffLSRec's Table 1): the target is ranked
    among ``n_negatives`` items drawn uniformly from those the user has not interacted with. Reported only
    beside full ranking, to show how much it inflates the numbers.

    A user with fewer unseen items than ``n_negatives`` (a small catalogue) is ranked among all of them, each
    once: drawing with replacement counted one item several times and made a tiny catalogue look harder than
    full ranking."""
    n_items = scores.shape[1] - 1
    negatives = np.zeros((len(targets), n_negatives), dtype=np.int64)
    drawn = np.full((len(targets), n_negatives), True)
    short = 0
    for row, (target, history) in enumerate(zip(targets.tolist(), seen)):
        banned = np.zeros(n_items + 1, dtype=bool)
        banned[0] = banned[target] = True
        banned[history] = True
        allowed = np.flatnonzero(~banned)
        if len(allowed) >= n_negatives:
            negatives[row] = rng.choice(allowed, size=n_negatives, replace=False)
        else:
            short += 1
            negatives[row, : len(allowed)] = allowed
            drawn[row, len(allowed) :] = False
    if short:
        log.info("sampled protocol: %d of %d users have fewer than %d unseen items; each is ranked among all of its own", short, len(targets), n_negatives)
    target_scores = scores.gather(1, targets.view(-1, 1))
    negative_scores = scores.gather(1, torch.as_tensor(negatives, device=scores.device))
    return ((negative_scores >= target_scores) & torch.as_tensor(drawn, device=scores.device)).sum(1)


@dataclass
class EvalResult:
    users: np.ndarray  # (n,) dense user id of each example, in the order of the examples evaluated
    ranks: np.ndarray  # (n,) 0-based rank of the target
    per_example: dict[str, np.ndarray] = field(default_factory=dict)

    def mean(self) -> dict[str, float]:
        return {k: float(v.mean()) if len(v) else 0.0 for k, v in self.per_example.items()}

    def bootstrap_ci(self, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap over examples (users) for each metric's mean."""
        rng = np.random.default_rng(seed)
        n = len(self.ranks)
        if n == 0:
            return {k: (0.0, 0.0) for k in self.per_example}
        idx = rng.integers(0, n, size=(n_boot, n))
        out = {}
        for k, v in self.per_example.items():
            means = v[idx].mean(axis=1)
            out[k] = (float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))
        return out


@torch.no_grad()
def evaluate(
    model,
    data: PreparedDataset,
    features: FeatureView,
    examples: np.ndarray,
    ks: tuple[int, ...] = (10,),
    filter_seen: bool = True,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    sampled_negatives: int | None = None,
    seed: int = 0,
) -> EvalResult:
    """Rank every item for each (user, position) example and compute metrics at each k.

    With ``sampled_negatives`` the target is ranked among that many random unseen items instead (the
    sampled protocol; never report it as if it were full ranking)."""
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    users, ranks = [], []
    try:
        for batch, targets, seen in eval_batches(data, features, examples, batch_size, model.max_len):
            scores = model.score(batch.to(device))
            target_t = torch.as_tensor(targets, device=scores.device)
            if sampled_negatives:
                r = sampled_ranks(scores, target_t, seen, sampled_negatives, rng)
            else:
                r = target_ranks(scores, target_t, seen if filter_seen else None)
            ranks.append(r.cpu().numpy())
            users.append(batch.users.numpy())
    finally:
        model.train(was_training)
    ranks_arr = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    users_arr = np.concatenate(users) if users else np.zeros(0, np.int64)
    # back to the order of ``examples`` (the batches went by history length): a caller pairing these values
    # with another model's on the same examples must not have to know the batching's order
    back = np.empty(len(examples), dtype=np.int64)
    back[eval_order(examples)] = np.arange(len(examples))
    result = EvalResult(users=users_arr[back], ranks=ranks_arr[back])
    for k in ks:
        result.per_example.update(rank_metrics(result.ranks, k))
    return result


def paired_test(a: EvalResult, b: EvalResult, metric: str) -> dict[str, float]:
    """Paired two-sided tests of metric(a) vs metric(b) over the same examples (t-test and Wilcoxon)."""
    from scipy import stats

    oa, ob = np.argsort(a.users, kind="stable"), np.argsort(b.users, kind="stable")
    if not np.array_equal(a.users[oa], b.users[ob]):
        raise ValueError("paired test needs both results on the same examples")
    x, y = a.per_example[metric][oa], b.per_example[metric][ob]
    diff = x - y
    t = stats.ttest_rel(x, y) if diff.any() else None
    w = stats.wilcoxon(x, y) if diff.any() else None
    return {
        "mean_diff": float(diff.mean()),
        "t_pvalue": float(t.pvalue) if t is not None else 1.0,
        "wilcoxon_pvalue": float(w.pvalue) if w is not None else 1.0,
    }


def seed_averaged(results: list[EvalResult]) -> EvalResult:
    """One value per test user: each metric averaged over the seeds' runs (same users in every run), so that
    a paired test over users uses every seed without counting a user once per seed."""
    order = [np.argsort(r.users, kind="stable") for r in results]
    users = results[0].users[order[0]]
    if any(not np.array_equal(r.users[o], users) for r, o in zip(results, order)):
        raise ValueError("seed_averaged needs the same test users in every run")
    return EvalResult(
        users=users,
        ranks=np.mean([r.ranks[o] for r, o in zip(results, order)], axis=0),  # mean rank (not an integer)
        per_example={k: np.mean([r.per_example[k][o] for r, o in zip(results, order)], axis=0) for k in results[0].per_example},
    )
