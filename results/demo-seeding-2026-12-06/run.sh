#!/bin/bash
# A/B of the worker's seeding from artifact histories on the ml-100k demo (same bootstrap options, same seed)
cd /work/main
DIFFLSREC_SEED_STATES=false .venv/bin/difflsrec --threads 1 demo --out runs/demo-seed-off > runs/demo-seed-off.txt 2>&1
.venv/bin/difflsrec --threads 1 demo --out runs/demo-seed-on > runs/demo-seed-on.txt 2>&1
