#!/bin/bash
# faiss's bundled OpenBLAS: its generic kernel (what it picks on this CPU by itself, = the code before
# index/faiss_blas.py) against the native one with exact searches on BLAS from 8 queries (the new default).
# Serving steps without Kafka (bench_engine), alternating, trainings paused meanwhile.
cd "$(git rev-parse --show-toplevel)"
A=${ARTIFACT:-runs/ml1m-1ep}
PIDS=$(pgrep -f "difflsrec.cli --threads 1 reproduce|difflsrec --threads 1 reproduce")
[ -n "$PIDS" ] && kill -STOP $PIDS; echo "paused '$PIDS' at $(date +%T)"
for round in 1 2; do
  for arm in generic native; do
    for order in "--interleave 1000" ""; do
      echo "== round $round, $arm kernel, ${order:-time order}"
      if [ $arm = generic ]; then export OPENBLAS_CORETYPE=Prescott; else unset OPENBLAS_CORETYPE; fi
      .venv/bin/python benchmarks/bench_engine.py --artifact $A --events 20000 --batches 256,20 --repeat 3 $order 2>&1 | grep -v "^20[0-9][0-9]-"
    done
  done
done
unset OPENBLAS_CORETYPE
[ -n "$PIDS" ] && kill -CONT $PIDS; echo "resumed at $(date +%T)"
