"""Validation NDCG@10 per epoch of every run a reproduce DIR holds, one line per (model, seed), best epoch
marked; also prints each run's best validation, test NDCG@10 / HR@10, epochs and training minutes.

    .venv/bin/python results/ml1m-full-2026-12-06/curves.py runs/repro1m-full [OUT.png]   # from the repo root

Runs still training are read from their checkpoints (``<id>.checkpoint.pt``: history only, no test numbers;
checkpoints written before the model name was recorded are labelled by the run id).
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from model.checkpoint import describe  # noqa: E402
from model.run_file import load_run  # noqa: E402

directory = Path(sys.argv[1])
out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("valid_curves.png")
curves = []
for path in sorted(directory.glob("runs/*.npz")):
    r = load_run(path)
    m = r.test.mean()
    curves.append((r.model, r.seed, r.history, r.best_epoch, f"test NDCG@10 {m['NDCG@10']:.4f} HR@10 {m['HR@10']:.4f}", r.train_seconds))
for path in sorted(directory.glob("runs/*.checkpoint.pt")):
    d = describe(path)
    name = f"{d['model']} in training" if d["model"] else f"in training {path.name[:8]}"
    curves.append((name, -1, d["history"], d["best_epoch"], f"epoch {d['epoch']}", d["seconds"]))
colors = {}
fig, ax = plt.subplots(figsize=(8, 5))
for model, seed, history, best, note, seconds in sorted(curves, key=lambda c: (c[0], c[1])):
    epochs = [h["epoch"] for h in history]
    valid = [h["valid_NDCG@10"] for h in history]
    best_valid = max(valid)
    name = model if seed < 0 else f"{model} seed {seed}"
    print(f"{name:16s}: best valid NDCG@10 {best_valid:.4f} at epoch {best} of {len(history)}, {note}, {seconds / 60:.0f} min")
    color = colors.setdefault(model, f"C{len(colors)}")
    ax.plot(epochs, valid, color=color, alpha=0.8, label=name)
    ax.plot([best], [valid[epochs.index(best)]], "o", color=color)
ax.set_xlabel("epoch")
ax.set_ylabel("validation NDCG@10 (full ranking)")
ax.set_title(f"{directory.name}: validation per epoch (dot: best epoch)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=120)
print("wrote", out)
