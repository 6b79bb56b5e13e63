"""Time to fuse and score a batch of users, for each number of reverse-diffusion steps.

    .venv/bin/python benchmarks/bench_fusion.py [--artifact DIR | --input ml-1m/ratings.dat] [--batch 256] [--steps 1,2,4,8,16]

For a batch of real users (their last short-term windows and long-term states), prints the median time of
(a) ``fuse`` (short-term encoder + guided reverse chain) and (b) fuse + scoring the whole catalogue, for each
inference-step count, next to the gate-fusion variant (no diffusion) run in the same process as baseline,
and the cost of the streaming long-term update (one ``long_step`` for the whole batch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.artifact import load_artifact  # noqa: E402
from model.batching import FeatureView, eval_batches  # noqa: E402
from model.benchmark import fit_features  # noqa: E402
from model.data.prepare import prepare  # noqa: E402
from model.nn.short_term import last_window  # noqa: E402
from model.registry import build  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)  # CUDA calls return early
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifact", type=Path, help="a trained DiffLSRec artifact (else an untrained model of the same shape)")
    ap.add_argument("--input", type=Path, default=Path.home() / ".cache/difflsrec/data/ml-1m/ratings.dat")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", default="1,2,4,8,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = prepare(a.input)
    if a.artifact:
        art = load_artifact(a.artifact)
        model, stats = art.model, art.stats
    else:
        stats = fit_features(data)
        model = build("difflsrec", data.sequences.n_items, stats)
    gate = build("difflsrec-gate", data.sequences.n_items, stats, {"d": model.config.d, "short_len": model.config.short_len})
    model.eval().to(a.device)
    gate.eval().to(a.device)
    batch, _, _ = next(eval_batches(data, FeatureView.build(data, stats), data.split.test[-a.batch :], batch_size=a.batch))
    batch = batch.to(a.device)
    with torch.inference_mode():
        e_long = model.encode_long(batch)[:, -1]
        window = last_window(batch.items, model.config.short_len)
        table = model.item_embeddings()
        print(f"{len(window)} users, {data.sequences.n_items} items, d={model.config.d}, {a.device}, {a.threads} threads, median of {a.repeats}")
        h = torch.zeros_like(e_long)
        step_ms = median_ms(lambda: model.long_step(h, batch.items[:, -1], batch.intervals[:, -1], batch.freqs[:, -1]), a.repeats)
        print(f"long-term streaming update (one event per user): {step_ms:7.2f} ms")
        base = median_ms(lambda: gate.fuse(e_long, window) @ table.T, a.repeats)
        print(f"gate fusion + scoring (no diffusion):            {base:7.2f} ms")
        print("steps   fuse ms   fuse+score ms   ratio to gate")
        for steps in [int(s) for s in a.steps.split(",")]:
            model.config.inference_steps = steps
            fuse = median_ms(lambda: model.fuse(e_long, window), a.repeats)
            full = median_ms(lambda: model.fuse(e_long, window) @ table.T, a.repeats)
            print(f"{steps:5d}   {fuse:7.2f}   {full:13.2f}   {full / base:13.2f}")


if __name__ == "__main__":
    main()
