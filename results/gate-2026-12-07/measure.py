"""How the publication gate's rules decide on real retrainings (bootstrap/gate.py).

A live version is bootstrapped on the first 80 % of the timeline; candidates are retrained on the whole
history by the real job (``run_once``, each into its own copy of the live registry, published whatever the
gate says) and then judged on the same validation users by three rules: the old absolute one (refuse when
the candidate's mean is more than 0.01 below the live mean), the relative rule on the means alone
(tolerance 5 %, alpha 1) and the paired relative rule (tolerance 5 %, alpha 0.05, the default now).
Candidates of equal quality (three seeds, warm-started as the job does by default, one cold start) are
also gated against each other, which is pure seed noise; cold starts stopped after a few epochs
(``--weak-epochs``) are the worse candidates.

    .venv/bin/python results/gate-2026-12-07/measure.py --input ~/.cache/difflsrec/data/ml-100k/u.data --out results/gate-2026-12-07/ml100k.json
    .venv/bin/python results/gate-2026-12-07/measure.py --input ~/.cache/difflsrec/data/ciao/ciao.jsonl.gz --weak-epochs 1 3 6 --out results/gate-2026-12-07/ciao.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from itertools import permutations
from pathlib import Path

import numpy as np
import torch

from bootstrap.gate import GateRule, decide, live_validation_scores
from bootstrap.job import BootstrapOptions, load_history, prepare_history, run_once
from bootstrap.registry import Registry
from model.artifact import load_artifact
from model.batching import FeatureView
from model.evaluation import evaluate
from model.training import TrainConfig

RULES = {"absolute 0.01 (old)": None, "relative 5 %, means": GateRule(0.05, 1.0), "paired relative 5 %, alpha 0.05 (new)": GateRule(0.05, 0.05)}


def absolute(candidate: np.ndarray, live: np.ndarray, margin: float = 0.01) -> bool:
    return not candidate.mean() < live.mean() - margin


def verdicts(candidate: np.ndarray, live: np.ndarray) -> dict:
    out = {"candidate_mean": float(candidate.mean()), "other_mean": float(live.mean()), "n": len(candidate)}
    for name, rule in RULES.items():
        if rule is None:
            out[name] = "publish" if absolute(candidate, live) else "refuse"
        else:
            d = decide(candidate, live, rule)
            out[name] = "publish" if d.publish else "refuse"
            out[name + " p"] = d.p_value
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--weak-epochs", type=int, nargs="*", default=[1], help="cold starts stopped after this many epochs: the worse candidates")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gate-measure-"))
    cache = work / "cache"
    always = GateRule(tolerance=1.0)

    def opts(**kw) -> BootstrapOptions:
        train = TrainConfig(epochs=kw.pop("epochs", args.epochs), patience=args.patience, seed=kw.pop("seed", 0), progress=False)
        return BootstrapOptions(inputs=[args.input], train=train, announce=False, gate=always, keep_versions=None, **kw)

    started = time.perf_counter()
    live_reg = Registry(work / "live")
    live_report = run_once(opts(train_until=0.8), live_reg, cache_dir=cache)
    print(f"live: {live_report.line()}", flush=True)
    candidates = {f"warm seed {s}": opts(seed=s) for s in (0, 1, 2)}
    candidates["cold seed 0"] = opts(warm_start=False)
    weak = [f"cold, {n} epoch{'s' if n > 1 else ''}" for n in args.weak_epochs]
    for name, n in zip(weak, args.weak_epochs):
        candidates[name] = opts(warm_start=False, epochs=n)
    arts = {}
    for name, o in candidates.items():
        reg_dir = work / name.replace(" ", "-").replace(",", "")
        shutil.copytree(live_reg.root, reg_dir)
        report = run_once(o, Registry(reg_dir), cache_dir=cache)
        print(f"{name}: {report.line()}", flush=True)
        arts[name] = (load_artifact(Registry(reg_dir).latest_path()), report.metrics)

    data = prepare_history(load_history(opts(), None, "interactions"), 5, cache)
    live = load_artifact(live_reg.latest_path())
    live_scores = live_validation_scores(live, data)
    scores = {name: evaluate(a.model, data, FeatureView.build(data, a.stats), data.split.valid).per_example["NDCG@10"] for name, (a, _) in arts.items()}
    rows = [{"candidate": name, "against": "live (first 80 %)", "best_epoch": arts[name][1].get("best_epoch"), **verdicts(s, live_scores)} for name, s in scores.items()]
    equal = [n for n in scores if n not in weak]
    rows += [{"candidate": a, "against": b, **verdicts(scores[a], scores[b])} for a, b in permutations(equal, 2)]
    rows += [{"candidate": w, "against": b, **verdicts(scores[w], scores[b])} for w in weak for b in equal]
    result = {"input": str(args.input), "n_validation_users": len(data.split.valid), "epochs": args.epochs, "patience": args.patience,
              "minutes": (time.perf_counter() - started) / 60, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    names = list(RULES)
    print(f"\n{len(data.split.valid)} validation users; {result['minutes']:.0f} min")
    print("| candidate | against | candidate NDCG@10 | other | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for r in rows:
        cells = [r[n] + (f" (p {r[n + ' p']:.2g})" if n + " p" in r else "") for n in names]
        print(f"| {r['candidate']} | {r['against']} | {r['candidate_mean']:.4f} | {r['other_mean']:.4f} | " + " | ".join(cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
