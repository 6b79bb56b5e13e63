#!/bin/bash
# A/B of the worker consumer's fetch settings; trainings paused (SIGSTOP) meanwhile
cd "$(git rev-parse --show-toplevel)"
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092
.venv/bin/difflsrec kafka start --data-dir /tmp/kfetch --port 39092
ART=runs/ml1m-capped/models/difflsrec/seed0
for i in 1 2; do
  for cfg in A B; do
    if [ $cfg = B ]; then export DIFFLSREC_FETCH_MIN_BYTES=65536 DIFFLSREC_FETCH_MAX_WAIT=0.01; else export DIFFLSREC_FETCH_MIN_BYTES=1 DIFFLSREC_FETCH_MAX_WAIT=1.5; fi  # A: Faust's own values (the defaults when this ran)
    echo "=== $cfg $i $(date +%T)"
    .venv/bin/difflsrec bench stream --artifact $ART --bootstrap 127.0.0.1:39092 --loads 1000,max --repeat 1 --broker-warmup 10 --out results/stream-fetch-2026-11-28/fetch-$cfg-$i.json 2>&1 | grep -v "INFO\|WARN" | tail -30
  done
done
.venv/bin/difflsrec kafka stop --data-dir /tmp/kfetch
