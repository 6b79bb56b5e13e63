#!/bin/bash
# DiffLSRec on Ciao, seed 0: batch composition and Adam weight decay (neither in the earlier sweeps); validation decides
cd /work/main
D=~/.cache/difflsrec/data/ciao/ciao.jsonl.gz
B=".venv/bin/difflsrec --threads 1 benchmark --input $D --seeds 1 --seed 0"
$B --models difflsrec --batching random --out runs/ciao-knobs/difflsrec-random > runs/ciao-knobs-difflsrec-random.txt 2>&1
$B --models difflsrec --weight-decay 1e-5 --out runs/ciao-knobs/difflsrec-wd1e-5 > runs/ciao-knobs-difflsrec-wd1e-5.txt 2>&1
$B --models difflsrec --weight-decay 1e-4 --out runs/ciao-knobs/difflsrec-wd1e-4 > runs/ciao-knobs-difflsrec-wd1e-4.txt 2>&1
$B --models sasrec --batching random --out runs/ciao-knobs/sasrec-random > runs/ciao-knobs-sasrec-random.txt 2>&1
$B --models sasrec --weight-decay 1e-5 --out runs/ciao-knobs/sasrec-wd1e-5 > runs/ciao-knobs-sasrec-wd1e-5.txt 2>&1
$B --models sasrec --weight-decay 1e-4 --out runs/ciao-knobs/sasrec-wd1e-4 > runs/ciao-knobs-sasrec-wd1e-4.txt 2>&1
$B --models difflsrec --weight-decay 1e-3 --out runs/ciao-knobs/difflsrec-wd1e-3 > runs/ciao-knobs-difflsrec-wd1e-3.txt 2>&1
$B --models sasrec --weight-decay 1e-3 --out runs/ciao-knobs/sasrec-wd1e-3 > runs/ciao-knobs-sasrec-wd1e-3.txt 2>&1
