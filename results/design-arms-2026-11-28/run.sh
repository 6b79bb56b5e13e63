#!/bin/bash
# session 2026-11-28c: are eta = 0 and the detached denoising target justified? ml-100k, seed 0, early stopping, validation NDCG@10
cd "$(git rev-parse --show-toplevel)"
D=~/.cache/difflsrec/data/ml-100k/u.data
for arm in "default" "eta1 --set difflsrec.eta=1.0" "nodetach --set difflsrec.detach_denoise_target=false"; do
  name=${arm%% *}; extra=${arm#$name}
  nice -n 5 .venv/bin/difflsrec --threads 1 benchmark --input $D --models difflsrec --seed 0 $extra --out runs/design-arms/$name
done
