"""Ciao Table 1 under the new default patience (20) against the patience-10 reproduction of 2026-11-27.

    python results/ciao-2026-12-06-p20/compare.py

report.json: `difflsrec --threads 1 reproduce --input ciao/ciao.jsonl.gz --seeds 3 --parts table1 --out
runs/reprociao-p20`; the patience-10 side: results/ciao-2026-11-27-target/report.json (same data, seeds and
settings but patience; the baselines' code is unchanged since, DiffLSRec's C.6 L2 term has been added
unscaled since 2026-11-28). Per model and seed: test NDCG@10 and best epoch at patience 10 and 20.
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
OLD = HERE.parent / "ciao-2026-11-27-target" / "report.json"


def seeds(report: dict, model: str) -> dict[int, dict]:
    return {r["seed"]: r for r in report["table1"].get(model, {}).get("per_seed", [])}


def main() -> None:
    old, new = json.loads(OLD.read_text()), json.loads((HERE / "report.json").read_text())
    print(f"{'model':10s} {'p10 mean':>9s} {'p20 mean':>9s} {'change':>8s} | per seed: p10 (best epoch) -> p20 (best epoch)")
    for model in new["table1"]:
        a, b = seeds(old, model), seeds(new, model)
        common = sorted(set(a) & set(b))
        if not common:
            continue
        ma = statistics.mean(a[s]["NDCG@10"] for s in common)
        mb = statistics.mean(b[s]["NDCG@10"] for s in common)
        detail = ", ".join(f"{a[s]['NDCG@10']:.4f} ({a[s]['best_epoch']}) -> {b[s]['NDCG@10']:.4f} ({b[s]['best_epoch']})" for s in common)
        print(f"{model:10s} {ma:9.4f} {mb:9.4f} {mb - ma:+8.4f} | {detail}")


if __name__ == "__main__":
    main()
