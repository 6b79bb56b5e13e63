"""DiffLSRec (seeds 0-2) against SASRec-CE with seeds 1-2 retrained at patience 30 (seed 0: the protocol run),
paired over the test users with the project's own summary and test (model.benchmark).

    .venv/bin/python results/ml1m-2k-2026-11-28-target/sasrec_patience30_compare.py   # from the repository root
"""
import glob
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model.benchmark import paired_over_seeds, summarise  # noqa: E402


def runs(directory: str, model: str, d: int | None = None) -> dict:
    out = {}
    for path in glob.glob(f"{directory}/runs/*.pkl"):
        r = pickle.loads(Path(path).read_bytes())
        if r.model == model and (d is None or r.config["d"] == d):
            out[r.seed] = r
    return out


ours = runs("runs/repro1m2k-target", "difflsrec", d=64)  # the K study's other sizes share the directory
protocol = runs("runs/repro1m2k-target", "sasrec")
patience30 = runs("runs/repro1m2k-p30", "sasrec")
for seed, r in sorted(patience30.items()):
    m = r.test.mean()
    print(f"sasrec patience 30, seed {seed}: test NDCG@10 {m['NDCG@10']:.4f}, HR@10 {m['HR@10']:.4f}, best epoch {r.best_epoch} of {r.epochs}, valid {r.valid['NDCG@10']:.4f}, {r.train_seconds / 60:.1f} min")
for name, group in (("sasrec patience 10 (protocol)", protocol), ("sasrec seed 0 patience 10 + seeds 1-2 patience 30", {**protocol, **patience30})):
    s = summarise(list(group.values()))
    t = paired_over_seeds(list(ours.values()), list(group.values()))
    print(f"{name}: NDCG@10 {s['NDCG@10']:.4f} ± {s['std']['NDCG@10']:.4f}, HR@10 {s['HR@10']:.4f}; DiffLSRec - it {t['mean_diff']:+.4f}, t p {t['t_pvalue']:.3g}, Wilcoxon p {t['wilcoxon_pvalue']:.3g} (seeds {t['seeds']})")
