#!/bin/bash
# session 2026-11-28d (code 9aac40e on: C.6's L2 added once per step, unscaled): the default with early
# stopping, then the default and the two design arms each for a fixed 90 epochs (no early stop), ml-100k, seed 0.
# Compare: python fixed_budget.py NAME=LOG ... on the logs (epochs-l2-and-fixed90.txt holds their validation lines).
cd "$(git rev-parse --show-toplevel)"
D=~/.cache/difflsrec/data/ml-100k/u.data
B="nice -n 5 .venv/bin/difflsrec --threads 1 benchmark --input $D --models difflsrec --seed 0"
$B --out runs/design-arms/l2-unscaled
for arm in "l2-unscaled-90" "eta1-90 --set difflsrec.eta=1.0" "nodetach-90 --set difflsrec.detach_denoise_target=false"; do
  name=${arm%% *}; extra=${arm#$name}
  $B --min-epochs 90 --epochs 90 $extra --out runs/design-arms/$name
done
# seed 1 of the default and the non-detached target, same budget (epochs-fixed90-seed1.txt, fixed_budget-seed1.out.txt)
for arm in "default90s1" "nodetach90s1 --set difflsrec.detach_denoise_target=false"; do
  name=${arm%% *}; extra=${arm#$name}
  nice -n 5 .venv/bin/difflsrec --threads 1 benchmark --input $D --models difflsrec --seed 1 --min-epochs 90 --epochs 90 $extra --out runs/design-arms/$name
done
