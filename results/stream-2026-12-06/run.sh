#!/bin/bash
# Fresh machine, new library versions (aiokafka 0.14.0, faust-streaming 0.15.3, torch 2.15.0, faiss-cpu 1.15.1):
# the worker against the pass-through, time order and 1,000 users at a time, trainings paused meanwhile.
cd "$(git rev-parse --show-toplevel)"
R=results/stream-2026-12-06
A=${ARTIFACT:-runs/ml1m-1ep}
PIDS=$(pgrep -f "difflsrec.cli --threads 1 reproduce|difflsrec --threads 1 reproduce")
.venv/bin/difflsrec kafka start --data-dir /tmp/kb-bench --port 39092
[ -n "$PIDS" ] && kill -STOP $PIDS; echo "paused '$PIDS' at $(date +%T)"
for round in 1 2; do
  .venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092 --loads 1000,max --repeat 2 --out $R/time-$round.json > $R/time-$round.out.txt 2>&1
  .venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092 --loads max --repeat 2 --interleave 1000 --out $R/users1000-$round.json > $R/users1000-$round.out.txt 2>&1
done
[ -n "$PIDS" ] && kill -CONT $PIDS; echo "resumed at $(date +%T)"
.venv/bin/difflsrec kafka stop --data-dir /tmp/kb-bench
