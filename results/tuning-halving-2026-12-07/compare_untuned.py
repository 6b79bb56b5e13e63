"""Each model tuned by successive halving (a `benchmark --tune ... --tune-rungs 3` folder's results.json) against
the same model with its defaults (a `reproduce --parts table1` report.json on the same data, same patience).

    python compare_untuned.py TUNED/results.json UNTUNED/report.json

Test NDCG@10 and validation NDCG@10, mean ± std over the seeds each side has; the choice was made on validation.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    tuned = json.load(open(sys.argv[1]))
    untuned = json.load(open(sys.argv[2]))["table1"]
    print("| model | chosen | tuned test NDCG@10 | defaults test NDCG@10 | tuned valid | defaults valid |")
    print("|---|---|---|---|---|---|")
    for name, r in tuned["results"].items():
        chosen = ", ".join(f"{k} {v}" for k, v in r.get("tuning", {}).get("chosen", {}).items()) or "defaults"
        u = untuned.get(name)
        base = "–" if u is None else f"{u['NDCG@10']:.4f} ± {u['std']['NDCG@10']:.4f}"
        base_valid = "–" if u is None else f"{u['valid']['NDCG@10']:.4f}"
        print(f"| {name} | {chosen} | {r['NDCG@10']:.4f} ± {r['std']['NDCG@10']:.4f} ({len(r['per_seed'])}) | {base} | {r['valid']['NDCG@10']:.4f} | {base_valid} |")


if __name__ == "__main__":
    main()
