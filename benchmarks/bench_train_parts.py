"""Where a DiffLSRec training step spends its time: forward + backward of each part on real batches.

    .venv/bin/python benchmarks/bench_train_parts.py [--input ml-1m/ratings.dat] [--threads 1] [--batches 4] [--repeats 3]

For the first ``--batches`` training batches (the trainer's own batching: every prefix of every sequence),
times, as forward + backward, the long-term time/frequency GRU over the batch, the short-term encoder over
every target position's window, and the whole loss (both encoders, the guided reverse chain, the catalogue
cross-entropy and the denoising loss). Prints the median of ``--repeats`` per batch and the shares summed
over batches. Quote only from a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.batching import FeatureView  # noqa: E402
from model.benchmark import fit_features  # noqa: E402
from model.data.prepare import prepare  # noqa: E402
from model.nn.short_term import sliding_windows  # noqa: E402
from model.registry import build  # noqa: E402
from model.training import TrainConfig, seed_everything, step_loss  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=Path.home() / ".cache/difflsrec/data/ml-1m/ratings.dat")
    ap.add_argument("--model", default="difflsrec")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = prepare(a.input)
    stats = fit_features(data)
    features = FeatureView.build(data, stats)
    seed_everything(0)
    model = build(a.model, data.sequences.n_items, stats)
    model.fit_statistics(data, features)
    model.train()
    cfg = TrainConfig()
    n = model.config.short_len

    def long_term(batch):
        model.encode_long(batch)[batch.targets > 0].sum().backward()

    def short_term(batch):
        e_short, tokens, _ = model.encode_short(sliding_windows(batch.items, n)[batch.targets > 0])
        (e_short.sum() + tokens.sum()).backward()

    def whole(batch):
        step_loss(model, batch)[0].backward()

    print(f"{a.model}, {data.sequences.n_users} users, {data.sequences.n_items} items, {a.threads} threads; forward + backward, median of {a.repeats}")
    print("batch (B x L)   targets   long-term GRU   short-term windows   whole loss")
    totals = [0.0, 0.0, 0.0]
    for i, batch in enumerate(cfg.batches(data, features, model)):
        if i >= a.batches:
            break
        secs = [median_seconds(lambda f=f: f(batch), a.repeats) for f in (long_term, short_term, whole)]
        model.zero_grad(set_to_none=True)
        totals = [t + s for t, s in zip(totals, secs)]
        shape = f"{batch.items.shape[0]} x {batch.items.shape[1]}"
        print(f"{shape:>13s}   {int((batch.targets > 0).sum()):7d}   {secs[0]:11.3f} s   {secs[1]:16.3f} s   {secs[2]:8.3f} s")
    print(f"share of the whole loss: long-term GRU {totals[0] / totals[2]:.0%}, short-term windows {totals[1] / totals[2]:.0%}")


if __name__ == "__main__":
    main()
