#!/bin/bash
# The Ciao sweep of 2026-11-28 as run (one thread, one arm at a time; ~3-4 min a DiffLSRec arm, ~1 min a SASRec arm).
# One change against the defaults per arm, seed 0, early stopping on validation NDCG@10; the arm with the
# best validation NDCG@10 of each model then ran seeds 0-2 in one benchmark (the last command).
D=~/.cache/difflsrec/data/ciao/ciao.jsonl.gz
arm() { model=$1 name=$2; shift 2; difflsrec --threads 1 benchmark --input $D --models $model --out runs/ciao-sweep-$model/$name "$@"; }
arm difflsrec default
arm difflsrec d32 --set difflsrec.d=32
for v in 0.1 0.3 0.5; do arm difflsrec do${v/./} --set difflsrec.dropout=$v; done
arm difflsrec ld1 --set difflsrec.lambda_diff=1.0
arm difflsrec ld001 --set difflsrec.lambda_diff=0.01
arm difflsrec sl5 --set difflsrec.short_len=5
arm difflsrec sl12 --set difflsrec.short_len=12
arm difflsrec smax4 --set difflsrec.s_max=4.0
arm difflsrec pu02 --set difflsrec.p_uncond=0.2
arm sasrec default
arm sasrec d32 --set sasrec.d=32
for v in 0.1 0.3 0.5; do arm sasrec do${v/./} --set sasrec.dropout=$v; done
arm sasrec nb1 --set sasrec.n_blocks=1
arm sasrec nb3 --set sasrec.n_blocks=3
arm sasrec ref --set sasrec.block=reference
arm sasrec posend --set sasrec.positions=end
arm sasrec h2 --set sasrec.n_heads=2
arm sasrec ml50 --set sasrec.max_len=50
difflsrec --threads 1 benchmark --input $D --models difflsrec,sasrec --seeds 3 --set difflsrec.d=32 --set sasrec.dropout=0.3 --out runs/ciao-tuned
