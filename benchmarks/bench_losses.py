"""Catalogue cross-entropy: torch's F.cross_entropy vs model.losses.catalogue_ce, forward + backward.

    .venv/bin/python benchmarks/bench_losses.py [--positions 16384] [--items 3416] [--d 64] [--threads 2]

Prints the median of repeated runs for each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.losses import catalogue_ce  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, default=16384)
    ap.add_argument("--items", type=int, default=3416)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    h = torch.randn(a.positions, a.d, requires_grad=True)
    E = torch.randn(a.items + 1, a.d, requires_grad=True)
    y = torch.randint(1, a.items + 1, (a.positions,))
    ref = median_ms(lambda: F.cross_entropy(h @ E[1:].T, y - 1).backward(), a.repeats)
    ours = median_ms(lambda: catalogue_ce(h, E, y).backward(), a.repeats)
    print(f"{a.positions} positions x {a.items} items, d={a.d}, {a.threads} threads")
    print(f"F.cross_entropy  {ref:8.1f} ms")
    print(f"catalogue_ce     {ours:8.1f} ms   ({ref / ours:.2f}x)")


if __name__ == "__main__":
    main()
