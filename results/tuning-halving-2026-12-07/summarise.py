"""Summarise successive-halving searches: each model's validation NDCG@10 by rung, its choice, the flat search's
choice (when given its folder) and the test results of the chosen configuration.

    python summarise.py HALVING_OUT [--flat FLAT_OUT]

HALVING_OUT / FLAT_OUT: `difflsrec benchmark --tune ... --out DIR` folders (their `tuning/*.json`, `results.json`).
Validation only decides; the test columns are read from results.json after the fact.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def searches(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text())["tuning"] for p in sorted((folder / "tuning").glob("*.json"))}


def by_rung(tuning: dict) -> list[list[float]]:
    rungs: dict[int, list[float]] = {}
    for trial in tuning["trials"]:
        # a trial that reached rung r was scored at every rung up to r, but only its last score is kept
        rungs.setdefault(trial.get("rung", 0), []).append(trial["valid"]["NDCG@10"])
    return [sorted(rungs[r], reverse=True) for r in sorted(rungs)]


def label(overrides: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in overrides.items()) or "defaults"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("halving", type=Path)
    ap.add_argument("--flat", type=Path)
    a = ap.parse_args()
    halving = searches(a.halving)
    flat = searches(a.flat) if a.flat else {}
    results = json.loads((a.halving / "results.json").read_text())["results"] if (a.halving / "results.json").exists() else {}
    print("| model | survivors' last validation NDCG@10 per rung (trials ended there) | chosen | flat search chose | test NDCG@10 (seeds) |")
    print("|---|---|---|---|---|")
    for name, tuning in halving.items():
        rungs = " ; ".join("/".join(f"{v:.4f}" for v in r) for r in by_rung(tuning))
        same = "" if name not in flat else ("the same" if flat[name]["chosen"] == tuning["chosen"] else label(flat[name]["chosen"]))
        r = results.get(name)
        test = "" if r is None else f"{r['NDCG@10']:.4f} ± {r['std']['NDCG@10']:.4f} ({len(r['per_seed'])})"
        print(f"| {name} | {rungs} | {label(tuning['chosen'])} | {same} | {test} |")


if __name__ == "__main__":
    main()
