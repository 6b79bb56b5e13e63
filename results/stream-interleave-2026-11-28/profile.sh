#!/bin/bash
# cProfile of the worker draining a backlog replayed 1,000 users at a time (trainings paused meanwhile)
cd "$(git rev-parse --show-toplevel)"
R=results/stream-interleave-2026-11-28
A=runs/ml1m-capped/models/difflsrec/seed0
PIDS=$(pgrep -f "difflsrec --threads 1 reproduce")
.venv/bin/difflsrec kafka start --data-dir /tmp/kb-int --port 39092
kill -STOP $PIDS; echo "paused $PIDS at $(date +%T)"
.venv/bin/difflsrec bench stream --artifact $A --bootstrap 127.0.0.1:39092 --loads max --repeat 1 --modes worker --interleave 1000 --profile-dir /tmp/prof-int --out /tmp/prof-int.json > $R/profile.out.txt 2>&1
kill -CONT $PIDS; echo "resumed at $(date +%T)"
.venv/bin/difflsrec kafka stop --data-dir /tmp/kb-int
