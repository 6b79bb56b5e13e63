"""Where one model wins or loses against another: per-user metrics of a benchmark run's saved models, sliced
by the user's history length and by the popularity of the item to predict.

    .venv/bin/python benchmarks/slices.py --run runs/ciao-halving20 --input ciao.jsonl.gz \\
        [--models difflsrec,sasrec] [--on valid,test] [--bins 4] [--png slices.png] [--json slices.json]

Every model's artifacts under ``RUN/models/NAME/seed*`` (what ``difflsrec benchmark`` saves) are evaluated on the
split they were trained on (full ranking, seen items filtered, as the benchmark does); each user's NDCG@10 is
averaged over the seeds. The examples are then cut into ``--bins`` groups of equal size by

  history   the number of items before the target (what the encoders read)
  target    how often the target item occurs in the training data (cold targets in the first group)

and each group's mean NDCG@10 is printed per model, with the first model minus the second and a paired t-test
over the group's users. A diagnostic of trained models (nothing is selected here); the validation rows say the
same as the test rows or they are not a finding.
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
from model.batching import FeatureView  # noqa: E402
from model.data.cli import prepare_options  # noqa: E402
from model.data.formats import ReadOptions  # noqa: E402
from model.data.prepare import prepare  # noqa: E402
from model.evaluation import EvalResult, evaluate, paired_test, seed_averaged  # noqa: E402

METRIC = "NDCG@10"


def model_results(run: Path, name: str, data, examples: np.ndarray) -> tuple[EvalResult, int]:
    """The seed-averaged per-user result of every saved seed of ``name`` in ``run``, and how many seeds."""
    folders = sorted((run / "models" / name).glob("seed*"))
    if not folders:
        raise SystemExit(f"no saved models under {run / 'models' / name} (benchmark saves them unless --no-save-models)")
    results = []
    for folder in folders:
        art = load_artifact(folder)
        if art.manifest["data_hash"] != data.hash:
            raise SystemExit(f"{folder} was trained on dataset {art.manifest['data_hash'][:12]}; these options give {data.hash[:12]}")
        results.append(evaluate(art.model, data, FeatureView.build(data, art.stats), examples))
    return seed_averaged(results), len(results)


def example_features(data, examples: np.ndarray) -> dict[str, np.ndarray]:
    """Per example: its history length and the training count of its target item."""
    seq = data.sequences
    counts = np.bincount(seq.items[data.train_mask()], minlength=seq.n_items + 1)
    targets = seq.items[seq.offsets[examples[:, 0]] + examples[:, 1]]
    return {"history": examples[:, 1].astype(np.int64), "target": counts[targets]}


def slices(values: np.ndarray, bins: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``bins`` groups of about equal size by ``values`` (ties kept together), labelled by their range."""
    order = np.argsort(values, kind="stable")
    groups, start = [], 0
    for b in range(1, bins + 1):
        end = round(b * len(order) / bins)
        while 0 < end < len(order) and values[order[end]] == values[order[end - 1]]:
            end += 1  # a value never straddles two groups
        if end > start:
            members = order[start:end]
            groups.append((f"{values[members].min()}-{values[members].max()}", members))
            start = end
    return groups


def sliced(results: dict[str, EvalResult], features: dict[str, np.ndarray], bins: int) -> dict:
    """{feature: [{range, n, mean per model, first - second, p}]} over the same users in every result."""
    names = list(results)
    ref = results[names[0]]
    for r in results.values():
        if not np.array_equal(r.users, ref.users):
            raise ValueError("every model must be evaluated on the same examples")
    out = {}
    for feature, values in features.items():
        rows = []
        for label, members in slices(values, bins):
            row = {"range": label, "n": int(len(members)), "mean": {n: float(r.per_example[METRIC][members].mean()) for n, r in results.items()}}
            if len(names) >= 2:
                a, b = (EvalResult(ref.users[members], results[n].ranks[members], {METRIC: results[n].per_example[METRIC][members]}) for n in names[:2])
                row["diff"] = paired_test(a, b, METRIC)
            rows.append(row)
        out[feature] = rows
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [p for p in ("valid", "test") if p in report["parts"]]
    features = list(report["parts"][parts[0]]["slices"])
    fig, axes = plt.subplots(len(parts), len(features), figsize=(5.2 * len(features), 3.4 * len(parts)), squeeze=False)
    for i, part in enumerate(parts):
        for j, feature in enumerate(features):
            ax, rows = axes[i][j], report["parts"][part]["slices"][feature]
            names = list(rows[0]["mean"])
            width = 0.8 / len(names)
            for k, name in enumerate(names):
                ax.bar(np.arange(len(rows)) + (k - (len(names) - 1) / 2) * width, [r["mean"][name] for r in rows], width, label=name)
            ax.set_xticks(np.arange(len(rows)), [f"{r['range']}\n(n={r['n']})" for r in rows], fontsize=7)
            ax.set_xlabel({"history": "items before the target", "target": "training count of the target item"}[feature])
            ax.set_ylabel(f"{part} {METRIC}")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{report['run']}: {METRIC} by slice (seed-averaged per user)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a `difflsrec benchmark` output folder")
    parser.add_argument("--input", type=Path, action="append", required=True)
    parser.add_argument("--models", default="difflsrec,sasrec", help="first minus second is tested per slice")
    parser.add_argument("--users", type=int)
    parser.add_argument("--kcore", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the data seed of the run (user subset)")
    parser.add_argument("--split", default="loo")
    parser.add_argument("--on", default="valid,test")
    parser.add_argument("--bins", type=int, default=4)
    parser.add_argument("--png", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.on or set(args.on.split(",")) - {"valid", "test"}:
        parser.error(f"--on takes valid and/or test, not {args.on!r}")
    torch.set_num_threads(1)
    data = prepare(args.input, prepare_options(ReadOptions(), args.kcore, args.users, args.seed, args.split, (0.8, 0.9)))
    names = args.models.split(",")
    report = {"run": str(args.run), "models": names, "metric": METRIC, "parts": {}}
    for part in args.on.split(","):
        examples = data.split.valid if part == "valid" else data.split.test
        results, seeds = {}, {}
        for name in names:
            results[name], seeds[name] = model_results(args.run, name, data, examples)
        by_user = np.argsort(examples[:, 0], kind="stable")  # seed_averaged orders users by id: align the features
        if not np.array_equal(results[names[0]].users, examples[by_user, 0]):
            raise SystemExit("slices need one example per user (a leave-one-out or timeline split's valid / test)")
        features = {k: v[by_user] for k, v in example_features(data, examples).items()}
        report["parts"][part] = {"seeds": seeds, "overall": {n: float(r.per_example[METRIC].mean()) for n, r in results.items()},
                                 "slices": sliced(results, features, args.bins)}
        print(f"\n{part}: {len(examples)} examples; {METRIC} " + ", ".join(f"{n} {v:.4f} ({seeds[n]} seeds)" for n, v in report["parts"][part]["overall"].items()))
        for feature, rows in report["parts"][part]["slices"].items():
            print(f"  by {feature}: {'range':>10} {'n':>6} " + " ".join(f"{n:>10}" for n in names) + ("   first-second    p" if len(names) >= 2 else ""))
            for r in rows:
                diff = f"   {r['diff']['mean_diff']:+.4f}  {r['diff']['t_pvalue']:8.2g}" if "diff" in r else ""
                print(f"  {'':>{len('by ' + feature) + 1}}{r['range']:>10} {r['n']:6d} " + " ".join(f"{r['mean'][n]:10.4f}" for n in names) + diff)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.png:
        plot(report, args.png)
        print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
