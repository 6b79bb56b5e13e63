"""Patience 10 against patience 20 on ml-100k, per model and seed (test NDCG@10, validation NDCG@10, best
epoch), from the results JSON files in this folder (results-p{10,20}-s{seed}[-difflsrec].json). DiffLSRec's
patience-10 run of seed 0 is the 2026-11-28 early-stopped run of the same code
(../design-arms-2026-11-28/results-l2-unscaled.json); today's libraries reproduce its curve through epoch 33
and it stops at the same epoch. Usage: python compare.py"""

import json
import statistics
from pathlib import Path

here = Path(__file__).parent
MODELS = ("difflsrec", "marank", "hgn", "gru4rec", "sasrec")


def load(patience: int, seed: int) -> dict:
    """model -> its benchmark result at this patience and seed (every results file of this folder that holds one)."""
    out = {}
    files = sorted(here.glob(f"results-p{patience}-s{seed}*.json"))
    if patience == 10 and seed == 0:
        files.append(here.parent / "design-arms-2026-11-28" / "results-l2-unscaled.json")
    for f in files:
        out.update(json.loads(f.read_text())["results"])
    return out


def main() -> None:
    rows = {}
    print(f"{'model':10s} {'seed':>4s}   {'test p10':>8s} {'test p20':>8s} {'gain':>7s}   {'valid p10':>9s} {'valid p20':>9s}   best epoch p10 / p20")
    for seed in (0, 1):
        p10, p20 = load(10, seed), load(20, seed)
        for m in MODELS:
            if m not in p10 or m not in p20:
                continue
            a, b = p10[m], p20[m]
            rows.setdefault(m, []).append((a["NDCG@10"], b["NDCG@10"]))
            print(f"{m:10s} {seed:4d}   {a['NDCG@10']:8.4f} {b['NDCG@10']:8.4f} {b['NDCG@10'] - a['NDCG@10']:+7.4f}   {a['valid']['NDCG@10']:9.4f} {b['valid']['NDCG@10']:9.4f}   {a['best_epoch']:g} / {b['best_epoch']:g}")
    print("\nmeans over the seeds each model has in both arms (test NDCG@10): p10 -> p20")
    for m, pairs in rows.items():
        print(f"{m:10s} {len(pairs)} seed(s)   {statistics.mean(p for p, _ in pairs):.4f} -> {statistics.mean(q for _, q in pairs):.4f}")


if __name__ == "__main__":
    main()
