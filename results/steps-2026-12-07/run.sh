#!/bin/bash
# How many reverse steps? DiffLSRec on ml-100k trained and served with 1 and 4 DDIM steps (train_steps follows
# inference_steps), against the default 2 (results/patience-2026-12-06/results-p20-s{0,1}.json: same command,
# same code path, patience 20). Usage: STEPS=1 SEED=0 bash run.sh
cd "$(git rev-parse --show-toplevel)"
D=~/.cache/difflsrec/data/ml-100k/u.data
S=${STEPS:-1}; SEED=${SEED:-0}
nice -n 5 .venv/bin/difflsrec --threads 1 benchmark --input $D --seed $SEED --models difflsrec --patience 20 \
  --set difflsrec.inference_steps=$S --out runs/steps/steps$S-s$SEED
