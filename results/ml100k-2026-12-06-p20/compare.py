"""ml-100k Table 1 under the new default patience (20), against patience 10 on the same code and seeds.

    python results/ml100k-2026-12-06-p20/compare.py

report.json: `difflsrec --threads 1 reproduce --input ml-100k/u.data --seeds 3 --parts table1 --out
runs/repro100k-p20` (two invocations, one per core). The patience-10 side: results/patience-2026-12-06/
(`benchmark` runs of seeds 0-1, five models; DiffLSRec seed 0 at patience 10 is the design-arms run of the
same code). Prints per model the three-seed mean, and seeds 0-1 at patience 10 and 20 (the reproduce runs'
seeds 0-1 next to the benchmark runs of the same patience: the same training, so they should agree).
"""

import importlib.util
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the patience comparison's loader knows which files hold each patience's runs (the folder name is no module name)
_spec = importlib.util.spec_from_file_location("patience_compare", HERE.parent / "patience-2026-12-06" / "compare.py")
patience = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(patience)


def ndcg_by_seed(patience_value: int) -> dict[str, dict[int, float]]:
    """model -> seed -> test NDCG@10 of the benchmark runs of seeds 0-1 at this patience."""
    out: dict[str, dict[int, float]] = {}
    for seed in (0, 1):
        for model, result in patience.load(patience_value, seed).items():
            out.setdefault(model, {}).update({r["seed"]: r["NDCG@10"] for r in result["per_seed"]})
    return out


def main() -> None:
    report = json.loads((HERE / "report.json").read_text())
    p10, p20_bench = ndcg_by_seed(10), ndcg_by_seed(20)
    print(f"{'model':10s} {'p20 seeds 0-2 NDCG@10':>24s} {'best epochs':>14s} | {'p10 s0-1':>9s} {'p20 s0-1':>9s} {'(benchmark p20 s0-1)':>22s}")
    for model, row in report["table1"].items():
        seeds = {r["seed"]: r for r in row["per_seed"]}
        values = [seeds[s]["NDCG@10"] for s in sorted(seeds)]
        mean, std = statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
        epochs = "/".join(str(seeds[s]["best_epoch"]) for s in sorted(seeds))
        first_two = [seeds[s]["NDCG@10"] for s in (0, 1) if s in seeds]
        a = p10.get(model, {})
        b = p20_bench.get(model, {})
        p10_mean = f"{statistics.mean([a[0], a[1]]):.4f}" if {0, 1} <= set(a) else "-"
        bench = ", ".join(f"{b[s]:.4f}" for s in (0, 1) if s in b) or "-"
        ours = ", ".join(f"{v:.4f}" for v in first_two)
        print(f"{model:10s} {mean:.4f} ± {std:.4f} (n={len(values)}) {epochs:>14s} | {p10_mean:>9s} {statistics.mean(first_two):>9.4f} ({ours} vs {bench})")
    imp = report.get("improvement", {})
    for metric, v in imp.items():
        print(f"improvement {metric}: {v}")


if __name__ == "__main__":
    main()
