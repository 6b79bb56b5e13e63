"""Compare design arms trained for a fixed 90 epochs (validation NDCG@10 of every epoch, from the training
logs), and replay patience-10 early stopping on each recorded curve: where it would have stopped, and with
what best. Usage: python fixed_budget.py NAME=LOG [NAME=LOG ...] (a log may hold several runs; the first
run in it is taken unless NAME=LOG:K picks the K-th, counting from 1)."""

import re
import statistics
import sys


def curve(spec: str) -> dict[int, float]:
    path, _, k = spec.partition(":")
    text = open(path, errors="replace").read().replace("\r", "\n")
    runs, cur = [], None
    for line in text.splitlines():
        m = re.match(r"difflsrec epoch\s+(\d+)\s+loss\s+\S+\s+valid HR@10 \S+\s+NDCG@10 (\S+)", line.strip())
        if not m:
            continue
        if int(m[1]) == 1:
            cur = {}
            runs.append(cur)
        cur[int(m[1])] = float(m[2])
    return runs[int(k or 1) - 1]


def early_stop(c: dict[int, float], patience: int = 10, min_epochs: int = 0) -> tuple[int, int, float]:
    """(stop epoch, best epoch, best value) of the trainer's rule replayed on a recorded curve (it never
    stops before ``min_epochs``)."""
    best_ep, best, stale = 0, float("-inf"), 0
    for ep in sorted(c):
        if c[ep] > best:
            best_ep, best, stale = ep, c[ep], 0
        else:
            stale += 1
        if stale >= patience and ep >= min_epochs:
            return ep, best_ep, best
    return max(c), best_ep, best


if __name__ == "__main__":
    print("arm            epochs  mean 11-30  mean 31-60  mean 61-90  best (epoch)      patience-10 replay: stop, best (epoch)")
    for arg in sys.argv[1:]:
        name, _, spec = arg.partition("=")
        c = curve(spec)
        window = lambda lo, hi: statistics.mean(c[e] for e in range(lo, hi + 1) if e in c) if any(e in c for e in range(lo, hi + 1)) else float("nan")  # noqa: E731
        b = max(c, key=c.get)
        stop, sb, sv = early_stop(c)
        print(f"{name:14s} {max(c):6d}  {window(11, 30):10.4f}  {window(31, 60):10.4f}  {window(61, 90):10.4f}  {c[b]:.4f} ({b:2d})     {stop:3d}, {sv:.4f} ({sb})")
