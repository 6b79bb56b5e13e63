#!/bin/bash
# Time-ordered replay vs 1,000 users at a time, same broker, same model, alternated; trainings paused meanwhile.
cd "$(git rev-parse --show-toplevel)"
R=results/stream-interleave-2026-11-28
A=runs/ml1m-capped/models/difflsrec/seed0
PIDS=$(pgrep -f "difflsrec --threads 1 reproduce")
.venv/bin/difflsrec kafka start --data-dir /tmp/kb-int --port 39092
kill -STOP $PIDS; echo "paused $PIDS at $(date +%T)"
for round in 1 2; do
  .venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092 --loads 1000,max --repeat 2 --out $R/time-$round.json > $R/time-$round.out.txt 2>&1
  .venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092 --loads 1000,max --repeat 2 --interleave 1000 --out $R/users1000-$round.json > $R/users1000-$round.out.txt 2>&1
done
kill -CONT $PIDS; echo "resumed at $(date +%T)"
.venv/bin/difflsrec kafka stop --data-dir /tmp/kb-int
