"""A model trained through a 2-step chain, served with other step counts (no retraining): validation and test
NDCG@10 of each, and the fusion's time per batch. Usage: python serve_steps.py ARTIFACT [ARTIFACT ...]
(ml-100k artifacts of `reproduce --subset-seed 0` or `benchmark`, default options)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

from model.artifact import load_artifact
from model.batching import FeatureView
from model.cli import load_dataset
from model.data.formats import ReadOptions
from model.evaluation import evaluate

DATA = Path.home() / ".cache/difflsrec/data/ml-100k/u.data"
STEPS = (1, 2, 3, 4, 8)


def main(paths: list[str]) -> None:
    torch.set_num_threads(1)
    prepared = {d.hash: d for d in (load_dataset([DATA], ReadOptions(), 5, None, seed, "loo") for seed in (0, 1))}  # the seed is in the hash
    for path in paths:
        art = load_artifact(Path(path))
        data = prepared[art.manifest["data_hash"]]  # the same interactions and split under either seed
        model, features = art.model.eval(), FeatureView.build(data, art.stats)
        trained = model.config.train_steps or model.config.inference_steps
        print(f"{path}: trained through {trained} steps")
        print("steps | valid NDCG@10 | test NDCG@10 | valid HR@10 | ms per 256 users (fusion, median of 21)")
        for steps in STEPS:
            model.config.inference_steps = steps
            model.config.train_steps = trained  # unchanged: only serving differs
            valid = evaluate(model, data, features, data.split.valid).mean()
            test = evaluate(model, data, features, data.split.test).mean()
            e_long, window = torch.randn(256, model.config.d), torch.randint(1, 100, (256, model.config.short_len))
            times = []
            with torch.inference_mode():
                for _ in range(21):
                    start = time.perf_counter()
                    model.fuse(e_long, window)
                    times.append((time.perf_counter() - start) * 1e3)
            print(f"{steps:5d} | {valid['NDCG@10']:.4f} | {test['NDCG@10']:.4f} | {valid['HR@10']:.4f} | {statistics.median(times):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
