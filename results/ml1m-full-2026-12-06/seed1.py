"""Seed 1 of the baselines trained on this machine after the seed-0 run files were lost with a fresh
checkout: their test metrics beside the seed-0 numbers recorded in report-7models.json, mean and std
(ddof = 1) over the two seeds, against DiffLSRec's seeds 0-1 from the same report.

    .venv/bin/python results/ml1m-full-2026-12-06/seed1.py runs/repro1m-full/runs
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from model.run_file import load_run  # noqa: E402

here = Path(__file__).parent
report = json.loads((here / "report-7models.json").read_text())["table1"]
runs = [load_run(p) for p in sorted(Path(sys.argv[1]).glob("*.npz"))]
metrics = ("HR@10", "NDCG@10")
print("| model | seed 0 (report-7models) | seed 1 (this machine) | mean ± std over seeds 0-1 | epochs (best), minutes of seed 1 |")
print("|---|---|---|---|---|")
for run in sorted(runs, key=lambda r: r.model):
    if run.seed != 1 or run.model not in report or run.model == "marank":  # MARank keeps the last-item skip since
        continue  # 2026-12-07: its runs are not comparable with report-7models' seed 0, trained without it
    seed0 = next(s for s in report[run.model]["per_seed"] if s["seed"] == 0)
    one = run.test.mean()
    cells = []
    for m in metrics:
        pair = [seed0[m], one[m]]
        cells.append((f"{seed0[m]:.4f}", f"{one[m]:.4f}", f"{statistics.mean(pair):.4f} ± {statistics.stdev(pair):.4f}"))
    print(f"| {run.model} | " + " / ".join(c[0] for c in cells) + " | " + " / ".join(c[1] for c in cells) + " | "
          + " / ".join(c[2] for c in cells) + f" | {run.epochs} ({run.best_epoch}), {run.train_seconds / 60:.0f} |")
d = report["difflsrec"]
print(f"| difflsrec (report-7models, seeds 0-1) | | | {d['HR@10']:.4f} ± {d['std']['HR@10']:.4f} / {d['NDCG@10']:.4f} ± {d['std']['NDCG@10']:.4f} | |")
