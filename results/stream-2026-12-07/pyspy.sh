#!/bin/bash
# py-spy (pip install py-spy, in a scratch venv at /tmp/spyenv) of the worker draining a 60,000-event backlog, 1,000 users at a time; trainings paused meanwhile
cd /work/main
PIDS=$(pgrep -f "difflsrec.cli --threads 1 reproduce")
kill -STOP $PIDS; echo "paused $PIDS $(date +%T)"
.venv/bin/difflsrec bench stream --artifact runs/ml1m-1ep --loads max --backlog 60000 --repeat 1 --interleave 1000 --modes worker,passthrough --out results/stream-2026-12-07/spy-bench.json > results/stream-2026-12-07/spy-bench.txt 2>&1 &
B=$!
W=""
for i in $(seq 1 600); do
  W=$(pgrep -f "difflsrec.cli worker" | head -1)
  [ -n "$W" ] && break; sleep 0.2
done
echo "worker $W"
# wait until it is consuming (the topic is pre-loaded, then the worker starts)
sleep 8
/tmp/spyenv/bin/py-spy record -p $W -d 25 -r 200 --format raw -o /tmp/spy/worker.txt --nonblocking > /tmp/spy/spy.log 2>&1  # gzipped into pyspy-worker.collapsed.gz
wait $B
kill -CONT $PIDS; echo "resumed $(date +%T)"
