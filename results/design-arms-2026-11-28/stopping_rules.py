"""Replay early-stopping rules on DiffLSRec's fixed 90-epoch validation curves (ml-100k, 2026-11-28 runs):
where each rule stops, the best validation NDCG@10 it keeps, and how far that is below the best of the
90 epochs. Validation only (the logs hold no per-epoch test numbers). Usage: python stopping_rules.py
(reads epochs-l2-and-fixed90.txt and epochs-fixed90-seed1.txt beside it)."""

import statistics

from fixed_budget import curve, early_stop

CURVES = {  # name -> log:run (the fixed-budget runs only)
    "default s0": "epochs-l2-and-fixed90.txt:2",
    "eta=1 s0": "epochs-l2-and-fixed90.txt:3",
    "non-detached s0": "epochs-l2-and-fixed90.txt:4",
    "default s1": "epochs-fixed90-seed1.txt:1",
    "non-detached s1": "epochs-fixed90-seed1.txt:2",
}
RULES = {"patience 10": (0, 10), "patience 20": (0, 20), "patience 30": (0, 30), "min 40 + patience 10": (40, 10), "min 60 + patience 10": (60, 10)}


if __name__ == "__main__":
    curves = {name: curve(spec) for name, spec in CURVES.items()}
    for name, c in curves.items():
        assert max(c) == 90 and len(c) == 90, (name, len(c))
    print(f"{'rule':22s}" + "".join(f"{n:>24s}" for n in curves) + "   mean shortfall  mean epochs")
    for rule, (lo, pat) in RULES.items():
        cells, short, eps = [], [], []
        for c in curves.values():
            ep, at, kept = early_stop(c, pat, lo)
            cells.append(f"{ep:3d}{'*' if ep == 90 else ' '} {kept:.4f} ({at:2d})")
            short.append(max(c.values()) - kept)
            eps.append(ep)
        print(f"{rule:22s}" + "".join(f"{x:>24s}" for x in cells) + f"   {statistics.mean(short):14.4f}  {statistics.mean(eps):11.1f}")
    print(f"{'best of 90 epochs':22s}" + "".join(f"{'':>4s} {max(c.values()):.4f} ({max(c, key=c.get):2d})".rjust(24) for c in curves.values()))
    print("cells: stop epoch (* = ran to the 90-epoch budget), best validation NDCG@10 kept (its epoch)")
