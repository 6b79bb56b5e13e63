#!/bin/bash
# Does patience-10 early stopping decide the ml-100k comparison? Every model of the top of Table 1 trained on
# ml-100k, seed 0, with patience 20 and (baselines) patience 10; DiffLSRec's patience-10 run of the same code
# and seed 0 is results/design-arms-2026-11-28/results-l2-unscaled.json (stopped at epoch 36). Compare: compare.py.
cd "$(git rev-parse --show-toplevel)"
D=~/.cache/difflsrec/data/ml-100k/u.data
B="nice -n 5 .venv/bin/difflsrec --threads 1 benchmark --input $D --seed ${SEED:-0}"
case "$1" in
  p20) $B --models difflsrec,marank,hgn,gru4rec,sasrec --patience 20 --out runs/patience/p20-s${SEED:-0} ;;
  p10) $B --models marank,hgn,gru4rec,sasrec --patience 10 --out runs/patience/p10-s${SEED:-0} ;;
  p10d) $B --models difflsrec --patience 10 --out runs/patience/p10-s${SEED:-0}-difflsrec ;;  # seed 1 (seed 0: see above)
esac
