#!/bin/bash
cd "$(git rev-parse --show-toplevel)"
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092
.venv/bin/difflsrec kafka start --data-dir /tmp/kfetch --port 39092
ART=runs/ml1m-capped/models/difflsrec/seed0
for cfg in C A B C; do
  case $cfg in
    A) export DIFFLSREC_FETCH_MIN_BYTES=1 DIFFLSREC_FETCH_MAX_WAIT=1.5;;  # Faust's own values (the defaults when this ran)
    B) export DIFFLSREC_FETCH_MIN_BYTES=65536 DIFFLSREC_FETCH_MAX_WAIT=0.01;;
    C) export DIFFLSREC_FETCH_MIN_BYTES=65536 DIFFLSREC_FETCH_MAX_WAIT=0.005;;
  esac
  echo "=== $cfg $(date +%T)"
  .venv/bin/difflsrec bench stream --artifact $ART --bootstrap 127.0.0.1:39092 --loads 1000,2000 --modes worker --broker-warmup 10 --out results/stream-fetch-2026-11-28/fetch2-$cfg-$(date +%H%M%S).json 2>&1 | grep -v "INFO\|WARN\|ERROR" | tail -30
done
.venv/bin/difflsrec kafka stop --data-dir /tmp/kfetch
