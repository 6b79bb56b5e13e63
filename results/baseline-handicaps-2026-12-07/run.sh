#!/bin/bash
# Choices a baseline audit said may handicap the baselines, each measured on validation (seed 0, one thread,
# beside other trainings; 2026-12-07):
#  * HGN with the reference code's L2 (weight decay 1e-4 and 1e-3), and with lr 3e-3, on ml-100k,
#  * MARank with the authors' last-item skip, and with their dropout 0.5 and L2 5e-4 as well, on ml-100k,
#  * T-DiffRec (DiffRec with recency-weighted input, already implemented) on full ML-1M.
cd "$(git rev-parse --show-toplevel)"
B=".venv/bin/python -m difflsrec.cli --threads 1 benchmark --seeds 1"
for wd in 0 0.0001 0.001; do
  $B --input ~/.cache/difflsrec/data/ml-100k/u.data --models hgn --weight-decay $wd --out runs/wd100k/hgn-wd$wd
done
$B --input ~/.cache/difflsrec/data/ml-1m/ratings.dat --models diffrec --seed 0 --set diffrec.temporal=true --out runs/tdiffrec-1m
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --models marank --set marank.last_item_skip=false --out runs/marank100k/default  # the default of that day
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --models marank --set marank.last_item_skip=true --out runs/marank100k/skip
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --models marank --set marank.last_item_skip=true --set marank.dropout=0.5 --weight-decay 0.0005 --out runs/marank100k/reference
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --models hgn --lr 0.003 --out runs/wd100k/hgn-lr3e-3
# 2026-12-07 (later): the authors' sigmoid on every attention logit before the softmax, on top of the skip
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --models marank --set marank.attention_sigmoid=true --out runs/marank100k/sigmoid
# seed 1 of both (skip only, skip + sigmoid): marank-sigmoid/seed1-without, marank-sigmoid/seed1
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --seed 1 --models marank --out runs/marank100k/skip-s1
$B --input ~/.cache/difflsrec/data/ml-100k/u.data --seed 1 --models marank --set marank.attention_sigmoid=true --out runs/marank100k/sigmoid-s1
