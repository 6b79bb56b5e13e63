"""Seconds per training epoch of each registered model on one dataset (default ML-1M), same batches.

    .venv/bin/python benchmarks/bench_epoch.py [--input ml-1m/ratings.dat] [--models difflsrec,sasrec,gru4rec] [--threads 2] [--batches N]
        [--device cuda] [--batching random]

Trains each model for one full epoch (or ``--batches`` batches, extrapolated to an epoch by the number of
training targets) with the shared trainer's batching and prints seconds per epoch and microseconds per
training target. Quote these only from a quiet machine: other processes on the cores distort them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.batching import FeatureView  # noqa: E402
from model.benchmark import fit_features  # noqa: E402
from model.data.prepare import prepare  # noqa: E402
from model.registry import build  # noqa: E402
from model.training import TrainConfig, seed_everything, step_loss  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=Path.home() / ".cache/difflsrec/data/ml-1m/ratings.dat")
    ap.add_argument("--models", default="difflsrec,sasrec,gru4rec,fossil,hgn,marank,diffrec")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=None, help="time this many batches and extrapolate (default: the whole epoch)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--batching", default="bucket", help="bucket | random (model/training.py TrainConfig.batching)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = prepare(a.input)
    stats = fit_features(data)
    features = FeatureView.build(data, stats)
    cfg = TrainConfig(batching=a.batching)
    device = torch.device(a.device)
    # CUDA calls return before the kernels finish: wait for them before reading the clock
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    print(f"{data.sequences.n_users} users, {data.sequences.n_items} items, {device}, {a.threads} threads, {a.batching} batches")
    print("model            targets/epoch   s/epoch   us/target")
    for name in a.models.split(","):
        seed_everything(0)
        model = build(name, data.sequences.n_items, stats)
        model.to(device)
        model.fit_statistics(data, features)
        opt = torch.optim.Adam(model.parameters(), lr=model.default_lr)
        batches = cfg.batches(data, features, model)
        done, elapsed = 0, 0.0
        for i, batch in enumerate(batches):
            if a.batches is not None and i >= a.batches:
                break
            batch = batch.to(device)
            sync()
            t = time.perf_counter()
            loss, _ = step_loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
            elapsed += time.perf_counter() - t
            done += int((batch.targets > 0).sum())
        per_target = elapsed / max(1, done)
        print(f"{name:16s} {batches.n_targets:13d}   {per_target * batches.n_targets:7.1f}   {1e6 * per_target:9.1f}")


if __name__ == "__main__":
    main()
