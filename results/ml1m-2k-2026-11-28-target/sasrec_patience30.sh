#!/bin/bash
# SASRec-CE seeds 1-2 with patience 30 on the same 2,000 users (it ran on one core once that core's Table 1 invocation
# had finished, 08:42-09:46)
# (a sensitivity check of early stopping: seeds 1-2 stopped at epochs 51-60 with validation still creeping up)
cd "$(git rev-parse --show-toplevel)"
.venv/bin/difflsrec --threads 1 reproduce --input ~/.cache/difflsrec/data/ml-1m/ratings.dat --users 2000 --subset-seed 0 --seed 1 --seeds 2 --parts table1 --models sasrec --patience 30 --out runs/repro1m2k-p30
