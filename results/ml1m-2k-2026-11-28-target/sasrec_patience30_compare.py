"""Run from the repository root: .venv/bin/python results/ml1m-2k-2026-11-28-target/sasrec_patience30_compare.py

DiffLSRec (3 seeds) vs SASRec-CE with seeds 1-2 retrained at patience 30 (seed 0: the protocol run), per user."""
import glob, pickle, sys
import numpy as np
from scipy import stats


def per_user(r, metric):
    """Per-user values in user-id order, so runs line up."""
    return r.test.per_example[metric][np.argsort(r.test.users, kind="stable")]


def mean(r, metric):
    return r.test.mean()[metric]

def runs(d, model):
    out = {}
    for f in glob.glob(d + "/runs/*.pkl"):
        r = pickle.load(open(f, "rb"))
        if r.model == model and (model != "difflsrec" or (r.config.get("d") if isinstance(r.config, dict) else r.config.d) == 64):
            out[r.seed] = r
    return out

base = runs("runs/repro1m2k-target", "difflsrec")
sas = runs("runs/repro1m2k-target", "sasrec")
p30 = runs("runs/repro1m2k-p30", "sasrec")
print("difflsrec seeds", sorted(base), [round(mean(base[s], "NDCG@10"), 4) for s in sorted(base)])
print("sasrec p10", [round(mean(sas[s], "NDCG@10"), 4) for s in sorted(sas)], "p30", {s: (round(mean(r, "NDCG@10"), 4), round(mean(r, "HR@10"), 4), r.best_epoch, r.epochs, round(r.valid["NDCG@10"], 4), round(r.train_seconds / 60, 1)) for s, r in sorted(p30.items())})
mixed = {0: sas[0], **p30}
for name, group in (("sasrec p10 (protocol)", sas), ("sasrec seed0 p10 + seeds1-2 p30", mixed)):
    per_seed = [mean(group[s], "NDCG@10") for s in sorted(group)]
    hr = [mean(group[s], "HR@10") for s in sorted(group)]
    a = np.mean([per_user(base[s], "NDCG@10") for s in sorted(base)], axis=0)
    b = np.mean([per_user(group[s], "NDCG@10") for s in sorted(group)], axis=0)
    print(f"{name}: NDCG@10 {np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f}, HR@10 {np.mean(hr):.4f}; DiffLSRec - it {np.mean(a - b):+.4f}, t p {stats.ttest_rel(a, b).pvalue:.3g}, Wilcoxon p {stats.wilcoxon(a, b).pvalue:.3g}")
