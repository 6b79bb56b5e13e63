#!/bin/bash
# ENGINE_THREAD true vs false, 1,000 users at a time, one broker for all; trainings paused meanwhile
cd /work/main
PIDS=$(pgrep -f "difflsrec.cli --threads 1 reproduce")
.venv/bin/difflsrec kafka start --data-dir /tmp/kb-ab --port 39192 > results/stream-2026-12-07/kafka.txt 2>&1
kill -STOP $PIDS; echo "paused $PIDS $(date +%T)"
B=".venv/bin/difflsrec bench stream --artifact runs/ml1m-1ep --bootstrap 127.0.0.1:39192 --loads max --repeat 1 --interleave 1000"
for round in 1 2; do
  DIFFLSREC_ENGINE_THREAD=true $B --out results/stream-2026-12-07/engine-thread-ab-thread-$round.json > results/stream-2026-12-07/engine-thread-ab-thread-$round.out.txt 2>&1
  DIFFLSREC_ENGINE_THREAD=false $B --out results/stream-2026-12-07/engine-thread-ab-inline-$round.json > results/stream-2026-12-07/engine-thread-ab-inline-$round.out.txt 2>&1
done
kill -CONT $PIDS; echo "resumed $(date +%T)"
.venv/bin/difflsrec kafka stop --data-dir /tmp/kb-ab >> results/stream-2026-12-07/kafka.txt 2>&1
