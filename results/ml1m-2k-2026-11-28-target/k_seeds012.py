"""K study over seeds 0-2 where three seeds exist, from the committed reports (the cached runs behind them
were not kept): seeds 0-1 of every K (report-k-seeds01.json: mean and sample std of two values, from which
the two values are recovered as mean -/+ std/sqrt(2)), seed 2 of K = 16 and 64 (report-k16-k64-seeds012.json
holds their three-seed means) and of K = 32 and K = 8 (report-k32-seed2.json, report-k8-seed2.json, both
2026-12-06, same code as seeds 0-1: a worktree at 5910a32). Prints test and validation NDCG@10 mean ± std per K."""

import json
import math
import statistics
from pathlib import Path

here = Path(__file__).parent
two = json.loads((here / "report-k-seeds01.json").read_text())["embedding_size"]
three = json.loads((here / "report-k16-k64-seeds012.json").read_text())["embedding_size"]
seed2 = {k: json.loads((here / f"report-{k.lower().replace('=', '')}-seed2.json").read_text())["embedding_size"][k] for k in ("K=8", "K=32")}


def pair(mean: float, std: float) -> list[float]:
    return [mean - std / math.sqrt(2), mean + std / math.sqrt(2)]


print("K      seeds  test NDCG@10 mean ± std   valid NDCG@10 mean")
for k, r in two.items():
    test = pair(r["NDCG@10"], r["std"]["NDCG@10"])
    valid_mean = r["valid"]["NDCG@10"]
    if k in three:  # three-seed means: the third value is 3 * mean3 - (sum of the first two)
        test.append(3 * three[k]["NDCG@10"] - sum(test))
        valid_mean = three[k]["valid"]["NDCG@10"]
    elif k in seed2:
        test.append(seed2[k]["NDCG@10"])
        valid_mean = (2 * valid_mean + seed2[k]["valid"]["NDCG@10"]) / 3
    print(f"{k:6s} {len(test):5d}  {statistics.mean(test):.4f} ± {statistics.stdev(test):.4f}            {valid_mean:.4f}")
