"""Validation (which decides) and test NDCG@10 of the Ciao knob runs, seed 0, against each model's defaults.

    python summarise.py RUNS_DIR DEFAULTS_RESULTS_JSON

RUNS_DIR: the `--out` folders' parent (runs/ciao-knobs/<model>-<knob>/results.json); DEFAULTS_RESULTS_JSON: a
benchmark's results.json holding each model's seed-0 run with its defaults (runs/ciao-halving20/results.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def seed0(result: dict) -> dict:
    run = next((s for s in result.get("per_seed", []) if s["seed"] == 0), result)
    return {"valid": run["valid"]["NDCG@10"], "test": run["NDCG@10"], "best_epoch": run.get("best_epoch", result.get("best_epoch"))}


def main() -> None:
    runs, defaults = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())["results"]
    rows = []
    for model in ("difflsrec", "sasrec"):
        d = defaults[model]
        trial = next(t for t in d["tuning"]["trials"] if t["overrides"] == {}) if "tuning" in d else None
        base = seed0(d)
        rows.append((model, "defaults", base["valid"], base["test"], trial["best_epoch"] if trial else base["best_epoch"]))
        for folder in sorted(runs.glob(f"{model}-*")):
            path = folder / "results.json"
            if path.is_file():
                r = seed0(json.loads(path.read_text())["results"][model])
                rows.append((model, folder.name.split("-", 1)[1], r["valid"], r["test"], r["best_epoch"]))
    print("| model | knob | valid NDCG@10 | test NDCG@10 | best epoch |")
    print("|---|---|---|---|---|")
    for model, knob, valid, test, best in rows:
        print(f"| {model} | {knob} | {valid:.4f} | {test:.4f} | {best} |")


if __name__ == "__main__":
    main()
