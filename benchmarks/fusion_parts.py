"""What the diffusion fusion of a trained DiffLSRec adds: validation (and test) metrics of the user embedding
it serves next to the parts it is made of, on the split the artifact was trained on.

    .venv/bin/python benchmarks/fusion_parts.py --artifact DIR --input FILE [--users N --kcore K --seed S] [--on valid,test]
    .venv/bin/python benchmarks/fusion_parts.py --checkpoint RUN.checkpoint.pt --input FILE ...   # a run in training:
        its best-validation weights so far, with the default configuration (what `reproduce` trains)

Rows (each a user embedding scored against the whole catalogue, seen items filtered, the same examples):
  fused        the served one: the guided DDIM chain from sqrt(abar_T) e_long (C.1, 3.5-3.8)
  e_long       the long-term GRU state alone (the chain's start, up to a scale: the same ranking)
  e_short      the short-term encoder's output alone
  cond only    the chain with the conditional noise prediction only (guidance scale s_t = 0 in 3.5)
  null only    the chain with the null condition only: no short-term information reaches it
and, per example, the cosine of the fused embedding with e_long and with e_short, and how many of the fused
top-10 items the e_long top-10 shares, and a paired test over examples of fused against e_long (NDCG@10).
A diagnostic of a trained model, not a training arm: nothing here is
selected on test (test rows are printed for information beside validation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.artifact import load_artifact  # noqa: E402
from model.batching import FeatureView, eval_batches  # noqa: E402
from model.benchmark import fit_features  # noqa: E402
from model.checkpoint import best_weights  # noqa: E402
from model.data.cli import prepare_options  # noqa: E402
from model.data.formats import ReadOptions  # noqa: E402
from model.data.prepare import prepare  # noqa: E402
from model.evaluation import EvalResult, paired_test, rank_metrics, target_ranks  # noqa: E402
from model.losses import catalogue_scores  # noqa: E402
from model.nn.short_term import last_window  # noqa: E402
from model.registry import build  # noqa: E402

VARIANTS = ("fused", "e_long", "e_short", "cond only", "null only")


def embeddings(model, batch) -> dict[str, torch.Tensor]:
    """Every variant's user embedding for one evaluation batch."""
    cfg = model.config
    e_long = model.encode_long(batch)[:, -1]
    window = last_window(batch.items, cfg.short_len)
    e_short, tokens, mask = model.encode_short(window)
    out = {"fused": model.fuse(e_long, window), "e_long": e_long, "e_short": e_short}
    steps = cfg.inference_steps
    for name, branch in (("cond only", 0), ("null only", 1)):
        def one_branch(e_t, t, e_short_, tokens_, mask_, branch=branch):
            c = model.condition(e_t, e_short_, tokens_, mask_)
            c = model.eps_net.null_condition.expand_as(c) if branch else c
            return model.eps_net(e_t, t, c)

        model.guided_eps = one_branch  # this instance only, for this call; removed below
        try:
            out[name] = model.reverse(e_long, e_short, tokens, mask, steps, cfg.inference_noise)
        finally:
            del model.guided_eps
    return out


def load_model(artifact_dir: Path | None, checkpoint: Path | None, data):
    """(model, its feature statistics, a label) from an artifact trained on ``data``, or from a training
    checkpoint's best weights with the default configuration."""
    if artifact_dir is not None:
        art = load_artifact(artifact_dir)
        if art.manifest["data_hash"] != data.hash:
            raise SystemExit(f"the artifact was trained on dataset {art.manifest['data_hash'][:12]}, these options give {data.hash[:12]}")
        return art.model, art.stats, f"{artifact_dir} (version {art.version})"
    weights, progress = best_weights(checkpoint)
    if progress["model"] != "difflsrec":
        raise SystemExit(f"{checkpoint} is a {progress['model']} checkpoint, not DiffLSRec's")
    if weights is None:
        raise SystemExit(f"{checkpoint} has no validated weights yet (saved before its first validation)")
    stats = fit_features(data)
    model = build("difflsrec", data.sequences.n_items, stats)
    model.load_state_dict(weights)
    return model, stats, f"{checkpoint} (best epoch {progress['best_epoch']} of {progress['epoch']} so far, validation NDCG@10 {progress['best_score']:.4f})"


def run(artifact_dir: Path | None, checkpoint: Path | None, inputs: list[Path], users: int | None, kcore: int, seed: int, split: str, on: list[str]) -> dict:
    data = prepare(inputs, prepare_options(ReadOptions(), kcore, users, seed, split, (0.8, 0.9)))
    model, stats, label = load_model(artifact_dir, checkpoint, data)
    model = model.eval()
    if model.config.fusion != "diffusion":
        raise SystemExit(f"{label} is a {model.config.fusion}-fusion model: nothing to take apart")
    features = FeatureView.build(data, stats)
    report: dict = {"model": label, "inference_steps": model.config.inference_steps}
    for part in on:
        examples = data.split.valid if part == "valid" else data.split.test
        ranks, rows_users = {name: [] for name in VARIANTS}, []
        cos_long, cos_short, overlap = [], [], []
        with torch.inference_mode():
            for batch, targets, seen in eval_batches(data, features, examples, 256, model.max_len):
                emb = embeddings(model, batch)
                rows_users.append(batch.users.numpy())
                target_t = torch.as_tensor(targets)
                tops = {}
                for name, e in emb.items():
                    scores = catalogue_scores(e, model.item_emb.weight)
                    ranks[name].append(target_ranks(scores, target_t, seen).numpy())
                    if name in ("fused", "e_long"):
                        masked = scores.clone()
                        for row, items in enumerate(seen):
                            masked[row, torch.as_tensor(items, dtype=torch.long)] = -torch.inf
                        tops[name] = masked.topk(10).indices
                cos_long.append(torch.nn.functional.cosine_similarity(emb["fused"], emb["e_long"]).numpy())
                cos_short.append(torch.nn.functional.cosine_similarity(emb["fused"], emb["e_short"]).numpy())
                overlap.append(np.array([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(tops["fused"], tops["e_long"])]))
        rows, results = {}, {}
        for name in VARIANTS:
            results[name] = EvalResult(users=np.concatenate(rows_users), ranks=np.concatenate(ranks[name]))
            results[name].per_example.update(rank_metrics(results[name].ranks, 10))
            rows[name] = {metric: float(values.mean()) for metric, values in results[name].per_example.items()}
        report[part] = {
            "metrics": rows,
            "cos_fused_long_median": float(np.median(np.concatenate(cos_long))),
            "cos_fused_short_median": float(np.median(np.concatenate(cos_short))),
            "top10_shared_with_e_long_mean": float(np.concatenate(overlap).mean()),
            "examples": int(len(results["fused"].ranks)),
            "fused_vs_e_long_NDCG@10": paired_test(results["fused"], results["e_long"], "NDCG@10"),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", type=Path)
    source.add_argument("--checkpoint", type=Path, help="a DiffLSRec training checkpoint (its best weights so far)")
    parser.add_argument("--input", type=Path, action="append", required=True)
    parser.add_argument("--users", type=int)
    parser.add_argument("--kcore", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the data seed the artifact was trained with (user subset)")
    parser.add_argument("--split", default="loo")
    parser.add_argument("--on", default="valid,test")
    parser.add_argument("--json", type=Path, help="write the report here too")
    args = parser.parse_args()
    if not args.on or set(args.on.split(",")) - {"valid", "test"}:
        parser.error(f"--on takes valid and/or test, not {args.on!r}")
    torch.set_num_threads(1)
    report = run(args.artifact, args.checkpoint, args.input, args.users, args.kcore, args.seed, args.split, args.on.split(","))
    print(f"{report['model']}, {report['inference_steps']} inference steps")
    for part in args.on.split(","):
        r = report[part]
        print(f"\n{part} ({r['examples']} examples): median cosine(fused, e_long) {r['cos_fused_long_median']:.3f}, "
              f"cosine(fused, e_short) {r['cos_fused_short_median']:.3f}; fused top-10 shares {r['top10_shared_with_e_long_mean']:.1f} items with e_long's")
        test = r["fused_vs_e_long_NDCG@10"]
        print(f"fused - e_long NDCG@10 per example {test['mean_diff']:+.4f} (t-test p = {test['t_pvalue']:.2g}, Wilcoxon p = {test['wilcoxon_pvalue']:.2g})")
        print(f"{'user embedding':<14} {'HR@10':>7} {'NDCG@10':>8} {'MRR@10':>7}")
        for name, m in r["metrics"].items():
            print(f"{name:<14} {m['HR@10']:7.4f} {m['NDCG@10']:8.4f} {m['MRR@10']:7.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
