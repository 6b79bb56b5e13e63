"""Validation and test NDCG@10 of each arm of run.sh (from each benchmark's results.json).

    .venv/bin/python results/baseline-handicaps-2026-12-07/compare.py
"""

import json
from pathlib import Path

ARMS = [
    ("HGN, ml-100k", "no L2 (default)", "runs/wd100k/hgn-wd0"),
    ("HGN, ml-100k", "weight decay 1e-4", "runs/wd100k/hgn-wd0.0001"),
    ("HGN, ml-100k", "weight decay 1e-3 (reference)", "runs/wd100k/hgn-wd0.001"),
    ("HGN, ml-100k", "lr 3e-3 (DiffLSRec's and GRU4Rec's)", "runs/wd100k/hgn-lr3e-3"),
    ("MARank, ml-100k", "without the skip (the default until 2026-12-07)", "runs/marank100k/default"),
    ("MARank, ml-100k", "last-item skip (the default since)", "runs/marank100k/skip"),
    ("MARank, ml-100k", "skip + dropout 0.5 + weight decay 5e-4 (reference)", "runs/marank100k/reference"),
    ("DiffRec, ML-1M", "T-DiffRec (recency-weighted input)", "runs/tdiffrec-1m"),
]
print("| model, data | arm | valid NDCG@10 | test HR@10 | test NDCG@10 | best epoch (of) |")
print("|---|---|---|---|---|---|")
for model, arm, folder in ARMS:
    path = Path(folder) / "results.json"
    if not path.exists():
        print(f"| {model} | {arm} | not run | | | |")
        continue
    (r,) = json.loads(path.read_text())["results"].values()
    print(f"| {model} | {arm} | {r['valid']['NDCG@10']:.4f} | {r['HR@10']:.4f} | {r['NDCG@10']:.4f} | {r['best_epoch']:.0f} ({r['epochs']:.0f}) |")
