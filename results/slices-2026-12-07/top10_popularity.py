import sys, numpy as np, torch
sys.path.insert(0, '.')
from model.artifact import load_artifact
from model.batching import FeatureView, eval_batches
from model.data.cli import prepare_options
from model.data.formats import ReadOptions
from model.data.prepare import prepare
from pathlib import Path
torch.set_num_threads(1)
inp, run = sys.argv[1], Path(sys.argv[2])
data = prepare([Path(inp)], prepare_options(ReadOptions(), 5, None, 0, "loo", (0.8, 0.9)))
seq = data.sequences
counts = np.bincount(seq.items[data.train_mask()], minlength=seq.n_items + 1)
q = np.quantile(counts[1:], [0.5, 0.9, 0.99])
print("item count quantiles 50/90/99%:", q, "max", counts.max())
for name in sys.argv[3].split(","):
    art = load_artifact(run / "models" / name / "seed0")
    m = art.model.eval(); feats = FeatureView.build(data, art.stats)
    tops = []
    with torch.inference_mode():
        for batch, targets, seen in eval_batches(data, feats, data.split.valid, 256, m.max_len):
            s = m.score(batch)
            s[:, 0] = -torch.inf
            for r, it in enumerate(seen): s[r, torch.as_tensor(it)] = -torch.inf
            tops.append(s.topk(10).indices.numpy())
    tops = np.concatenate(tops)
    c = counts[tops]
    emb = None
    for attr in ("item_emb",):
        if hasattr(m, attr): emb = getattr(m, attr).weight.detach().numpy()
    corr = np.corrcoef(np.linalg.norm(emb[1:], axis=1), np.log1p(counts[1:]))[0, 1] if emb is not None else float('nan')
    print(f"{name:10s} top-10 median train count {np.median(c):6.1f} mean {c.mean():6.1f}  share >=p90 {np.mean(c >= q[1]):.3f} >=p99 {np.mean(c >= q[2]):.3f}  distinct items {len(np.unique(tops))}  corr(|e_i|, log count) {corr:.2f}")
