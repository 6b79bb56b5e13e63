#!/usr/bin/env bash
# device run 2: SASRec-CE variants on full ML-1M (issue 2) and the baselines on full ML-1M (issue 3), in parallel on one GPU
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/out}; W=${W:-/tmp/work}; mkdir -p $W
export PYTHONUNBUFFERED=1
DL="python3 -c 'import sys; from difflsrec.cli import main; sys.argv[0]=\"difflsrec\"; main()'"
D=${D:-~/.cache/difflsrec/data/ml-1m/ratings.dat}; DEV=${DEV:-cuda}; EXTRA=${EXTRA:-}
python3 -c "from model.cli import load_dataset; from pathlib import Path; d=load_dataset([Path('$D')],'auto',5,None,0,'loo','parent_asin'); print(d.sequences.n_users, d.sequences.n_items)"
REF="--set sasrec.block=reference --set sasrec.dropout=0.1"
run() { name=$1; shift; (eval "$DL --threads 1 benchmark --input $D --device $DEV --max-minutes 3.4 $EXTRA --out $W/$name $*" > $W/$name.log 2>&1; echo "$name rc=$?" >> $W/done) & }
run gru-bucket-s0 --models gru4rec --seed 0
run gru-bucket-s1 --models gru4rec --seed 1
run gru-bucket-s2 --models gru4rec --seed 2
run gru-random-s0 --models gru4rec --batching random --seed 0
run gru-random-s1 --models gru4rec --batching random --seed 1
run gru-random-s2 --models gru4rec --batching random --seed 2
run theirs-s2 --models sasrec $REF --batching random --set sasrec.ln_eps=1e-8 --set sasrec.qkv_init=xavier --grad-clip 0 --seed 2
# deadline: whatever has not finished 250 s after the start is stopped (its log still comes back)
for i in $(seq 250); do [ $(jobs -rp | wc -l) -eq 0 ] && break; sleep 1; done
pkill -f "difflsrec.cli" ; sleep 2
python3 - <<PY
import json, glob, os
out = {}
for p in sorted(glob.glob("$W/*/results.json")):
    r = json.load(open(p)); name = p.split("/")[-2]
    out[name] = {"train": r["train"], "n_users": r["n_users"], "n_items": r["n_items"],
                 "results": {m: {k: v[k] for k in ("HR@10", "NDCG@10", "MRR@10", "Precision@10", "valid", "best_epoch", "epochs", "train_seconds", "seconds_per_epoch_median", "config", "ci95")} for m, v in r["results"].items()}}
json.dump(out, open("$OUT/gpu_runs.json", "w"), indent=1)
for n, r in out.items():
    for m, v in r["results"].items():
        print(f"{n:10s} {m:8s} HR@10 {v['HR@10']:.4f} NDCG@10 {v['NDCG@10']:.4f} valid NDCG {v['valid']['NDCG@10']:.4f} best {v['best_epoch']}/{v['epochs']} {v['train_seconds']:.0f}s")
PY
cat $W/done
for f in $W/*.log; do echo "== $f"; grep -v "^\s*$" $f | tr '\r' '\n' | grep -v "it/s\]\|batch/s\]" | tail -4; done > $OUT/logs.txt
