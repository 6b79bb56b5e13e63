"""The publication gate: compare a candidate model with the live one on the SAME validation examples.

The live model was trained on older data with another vocabulary, so its own validation score says nothing
about today's users. Instead the new dataset is re-expressed in the live model's vocabulary: items it does
not know are dropped from histories (the worker cannot embed them either), and a validation target it does
not know counts as a miss. Both models are then ranked with the same full-catalogue evaluator.

The rule (:func:`decide`) is paired and relative. Relative, because NDCG@10 levels differ by an order of
magnitude between datasets (0.17 on ML-1M, 0.02-0.05 on a sparse Amazon category): an absolute allowance is
lenient on one and strict on the other. Paired, because both models are scored on the same users, so the
user-to-user spread cancels: the candidate is refused only when it is worse than the live model by more than
the allowed fraction *with confidence*, not when a small validation set happens to tip the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from model.artifact import Artifact
from model.batching import FeatureView
from model.data.dataset import PreparedDataset, Sequences, Split
from model.evaluation import evaluate


def in_vocabulary_of(data: PreparedDataset, item_ids: list[str]) -> tuple[PreparedDataset, np.ndarray]:
    """``data`` with items mapped to another vocabulary (unknown items removed), plus a (n_valid,) bool mask
    of validation examples whose target the vocabulary knows."""
    seq = data.sequences
    lookup = {item: i for i, item in enumerate(item_ids) if i > 0}
    mapping = np.array([0] + [lookup.get(str(x), 0) for x in seq.item_ids[1:]], dtype=np.int64)
    mapped = mapping[seq.items]
    keep = mapped > 0
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept interactions before global position g
    new_offsets = kept_before[seq.offsets]

    def remap_examples(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(rows) == 0:
            return rows.reshape(0, 2), np.zeros(0, bool)
        g = seq.offsets[rows[:, 0]] + rows[:, 1]
        known = keep[g]
        new_pos = kept_before[g] - new_offsets[rows[:, 0]]
        return np.stack([rows[:, 0], new_pos], 1)[known & (new_pos > 0)], known & (new_pos > 0)

    valid, valid_known = remap_examples(data.split.valid)
    test, _ = remap_examples(data.split.test)
    train_g = seq.offsets[:-1] + data.split.train_len
    train_len = kept_before[train_g] - new_offsets[:-1]
    sequences = Sequences(seq.user_ids, np.asarray(item_ids), new_offsets.astype(np.int64), mapped[keep], seq.times[keep])
    split = Split(data.split.name, train_len.astype(np.int64), valid, test, data.split.info)
    return PreparedDataset(sequences, split, {**data.meta, "hash": data.hash + "@" + str(len(item_ids))}), valid_known


def live_validation_scores(live: Artifact, data: PreparedDataset, metric: str = "NDCG@10") -> np.ndarray:
    """(n_valid,) the live artifact's metric on each of ``data``'s validation examples, in their order; an
    example whose target (or whose whole history) the live vocabulary lacks scores 0."""
    mapped, known = in_vocabulary_of(data, live.item_ids)
    scores = np.zeros(len(data.split.valid))
    if len(mapped.split.valid):
        result = evaluate(live.model, mapped, FeatureView.build(mapped, live.stats), mapped.split.valid)
        scores[known] = result.per_example[metric]
    return scores


@dataclass(frozen=True)
class GateRule:
    """Refuse a candidate whose mean falls below ``(1 - tolerance)`` x the live mean, significantly: a
    one-sided paired t-test over the validation examples at level ``alpha`` (``alpha`` = 1 decides on the
    means alone). A negative tolerance demands an improvement of that fraction."""

    tolerance: float = 0.05
    alpha: float = 0.05

    def __post_init__(self):
        if not self.tolerance <= 1.0:  # 1: the threshold is 0, every candidate passes
            raise ValueError(f"the gate's tolerance is a fraction of the live score, at most 1, got {self.tolerance}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"the gate's alpha is a significance level in (0, 1], got {self.alpha}")


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    candidate: float  # mean metric of each model on the same examples
    live: float
    threshold: float  # (1 - tolerance) x live
    p_value: float  # one-sided: the chance of a shortfall this large if the candidate were at the threshold
    n: int
    rule: GateRule

    def reason(self, metric: str = "NDCG@10") -> str:
        verdict = "below" if self.candidate < self.threshold else "not below"
        text = (f"validation {metric} {self.candidate:.4f} against the live {self.live:.4f} on the same {self.n} examples: "
                f"{verdict} the threshold {self.threshold:.4f} (live x {1 - self.rule.tolerance:g})")
        if self.rule.alpha < 1:
            text += f", one-sided paired p = {self.p_value:.3g} (refused below {self.rule.alpha:g})"
        return text

    def as_metrics(self) -> dict:
        return {"gate_candidate_NDCG@10": self.candidate, "gate_threshold": self.threshold, "gate_p_value": self.p_value, "gate_examples": self.n,
                "gate_tolerance": self.rule.tolerance, "gate_alpha": self.rule.alpha}


def decide(candidate: np.ndarray, live: np.ndarray, rule: GateRule) -> GateDecision:
    """Apply ``rule`` to two models' per-example scores on the same validation examples (same order)."""
    candidate, live = np.asarray(candidate, float), np.asarray(live, float)
    if candidate.shape != live.shape or candidate.ndim != 1:
        raise ValueError(f"the gate compares scores of the same examples, got shapes {candidate.shape} and {live.shape}")
    n = len(candidate)
    if n == 0:  # nothing to compare on: a history too short for a validation split must not block publication
        return GateDecision(True, 0.0, 0.0, 0.0, 1.0, 0, rule)
    c_mean, l_mean = float(candidate.mean()), float(live.mean())
    threshold = (1.0 - rule.tolerance) * l_mean
    diff = candidate - (1.0 - rule.tolerance) * live  # per example; its mean is the shortfall below the threshold
    shortfall = float(diff.mean())  # = c_mean - threshold; < 0: below it
    spread = float(diff.std(ddof=1)) if n > 1 else 0.0
    if n == 1:  # one example says nothing about the spread: no evidence either way
        p = 1.0
    elif spread == 0:  # the same difference on every example (e.g. both score 0 everywhere): no noise to allow for
        p = 0.0 if shortfall < 0 else 1.0
    else:
        p = float(stats.t.cdf(shortfall / (spread / np.sqrt(n)), df=n - 1))
    refuse = shortfall < 0 and (rule.alpha >= 1.0 or p < rule.alpha)
    return GateDecision(not refuse, c_mean, l_mean, threshold, p, n, rule)
