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


rows = []
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
    rows.append((int(k[2:]), test, valid_mean))

# the figure: each seed's test value, the mean with its std, and the validation mean (what a K is chosen by)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 4))
ks = [k for k, _, _ in rows]
for k, test, _ in rows:
    ax.scatter([k] * len(test), test, color="tab:blue", alpha=0.4, s=18)
ax.errorbar(ks, [statistics.mean(t) for _, t, _ in rows], yerr=[statistics.stdev(t) for _, t, _ in rows], color="tab:blue", marker="o", capsize=4, label="test, mean ± std (dots: seeds)")
ax.plot(ks, [v for _, _, v in rows], color="tab:orange", marker="s", linestyle="--", label="validation, mean")
ax.set_xscale("log", base=2)
ax.set_xticks(ks, [f"{k}\n({len(t)} seeds)" for k, t, _ in rows])
ax.set_xlabel("embedding size K")
ax.set_ylabel("NDCG@10 (full ranking)")
ax.set_title("DiffLSRec, ML-1M 2,000-user subset: embedding size")
ax.legend(loc="lower right")
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(here / "embedding_size-seeds012.png", dpi=120)
