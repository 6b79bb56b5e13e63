"""The publication gate: compare a candidate model with the live one on the SAME validation examples.

The live model was trained on older data with another vocabulary, so its own validation score says nothing
about today's users. Instead the new dataset is re-expressed in the live model's vocabulary: items it does
not know are dropped from histories (the worker cannot embed them either), and a validation target it does
not know counts as a miss. Both models are then ranked with the same full-catalogue evaluator.
"""

from __future__ import annotations

import numpy as np

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


def live_validation_ndcg(live: Artifact, data: PreparedDataset, metric: str = "NDCG@10") -> float:
    """Mean validation metric of the live artifact on ``data``'s validation examples (unknown targets = 0)."""
    mapped, known = in_vocabulary_of(data, live.item_ids)
    n_examples = len(data.split.valid)
    if n_examples == 0:
        return 0.0
    if len(mapped.split.valid) == 0:
        return 0.0
    result = evaluate(live.model, mapped, FeatureView.build(mapped, live.stats), mapped.split.valid)
    return float(result.per_example[metric].sum() / n_examples)
