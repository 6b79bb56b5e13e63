#!/bin/bash
# What a trained DiffLSRec's diffusion fusion adds over its own parts (benchmarks/fusion_parts.py), on the models
# that were at hand on 2026-12-06: ml-100k (benchmark artifacts of results/patience-2026-12-06: patience 20 seeds
# 0 and 1, patience 10 seed 1), Ciao (`difflsrec --threads 1 train --input ciao.jsonl.gz --seed 0 --out
# runs/ciao-train-s0`, default settings: early-stopped at 55, best 35), full ML-1M (the reproduce run of seed 2, still
# training: its checkpoint's best weights so far; argument 1 = the label of that snapshot).
cd "$(git rev-parse --show-toplevel)"
O=results/fusion-parts-2026-12-06
P=".venv/bin/python benchmarks/fusion_parts.py"
D=~/.cache/difflsrec/data
if [ -z "$1" ]; then
  $P --artifact runs/patience/p20-s0/models/difflsrec/seed0 --input $D/ml-100k/u.data --json $O/ml100k-p20-s0.json > $O/ml100k-p20-s0.out.txt
  $P --artifact runs/patience/p20-s1/models/difflsrec/seed1 --seed 1 --input $D/ml-100k/u.data --json $O/ml100k-p20-s1.json > $O/ml100k-p20-s1.out.txt
  $P --artifact runs/patience/p10-s1-difflsrec/models/difflsrec/seed1 --seed 1 --input $D/ml-100k/u.data --json $O/ml100k-p10-s1.json > $O/ml100k-p10-s1.out.txt
  $P --artifact runs/ciao-train-s0 --input $D/ciao/ciao.jsonl.gz --json $O/ciao-s0.json > $O/ciao-s0.out.txt
else
  $P --checkpoint runs/repro1m-full/runs/6add54749f5fea1444bb38d7.checkpoint.pt --input $D/ml-1m/ratings.dat --json $O/ml1m-s2-$1.json > $O/ml1m-s2-$1.out.txt
fi
