#!/bin/bash
# after core B's Table 1 invocation (pid 6464) exits: SASRec-CE seeds 1-2 with patience 30 on the same 2,000 users
# (a sensitivity check of early stopping: seeds 1-2 stopped at epochs 51-60 with validation still creeping up)
cd /work/main
while kill -0 6464 2>/dev/null; do sleep 20; done
.venv/bin/difflsrec --threads 1 reproduce --input ~/.cache/difflsrec/data/ml-1m/ratings.dat --users 2000 --subset-seed 0 --seed 1 --seeds 2 --parts table1 --models sasrec --patience 30 --out runs/repro1m2k-p30
