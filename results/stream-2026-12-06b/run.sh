#!/bin/bash
# After the faiss BLAS change (index/faiss_blas.py): the worker against the pass-through through Kafka again,
# time order and 1,000 users at a time; with 1,000 users also an arm with faiss's own choice of kernel
# (OPENBLAS_CORETYPE=Prescott, what its OpenBLAS picks on this CPU by itself), alternated. Trainings paused.
cd "$(git rev-parse --show-toplevel)"
R=results/stream-2026-12-06b
A=${ARTIFACT:-runs/ml1m-1ep}
PIDS=$(pgrep -f "difflsrec.cli --threads 1 reproduce|difflsrec --threads 1 reproduce")
.venv/bin/difflsrec kafka start --data-dir /tmp/kb-bench --port 39092
[ -n "$PIDS" ] && kill -STOP $PIDS; echo "paused '$PIDS' at $(date +%T)"
B=".venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092"
for round in 1 2; do
  $B --loads 1000,max --repeat 2 --out $R/time-$round.json > $R/time-$round.out.txt 2>&1
  $B --loads max --repeat 2 --interleave 1000 --out $R/users1000-native-$round.json > $R/users1000-native-$round.out.txt 2>&1
  OPENBLAS_CORETYPE=Prescott $B --loads max --repeat 2 --interleave 1000 --out $R/users1000-generic-$round.json > $R/users1000-generic-$round.out.txt 2>&1
done
[ -n "$PIDS" ] && kill -CONT $PIDS; echo "resumed at $(date +%T)"
.venv/bin/difflsrec kafka stop --data-dir /tmp/kb-bench
