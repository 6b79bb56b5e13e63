#!/bin/bash
# the same A/B later in the day, the machine slower: Faust's fetch settings (A) against the new defaults (C)
cd "$(git rev-parse --show-toplevel)"
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092
.venv/bin/difflsrec kafka start --data-dir /tmp/kfetch3 --port 39092
ART=runs/ml1m-capped/models/difflsrec/seed0
for cfg in A C A C; do
  case $cfg in
    A) export DIFFLSREC_FETCH_MIN_BYTES=1 DIFFLSREC_FETCH_MAX_WAIT=1.5;;
    C) export DIFFLSREC_FETCH_MIN_BYTES=65536 DIFFLSREC_FETCH_MAX_WAIT=0.005;;
  esac
  echo "=== $cfg $(date +%T)"
  .venv/bin/difflsrec bench stream --artifact $ART --bootstrap 127.0.0.1:39092 --loads 1000 --broker-warmup 10 --out results/stream-fetch-2026-11-28/fetch3-$cfg-$(date +%H%M%S).json 2>&1 | grep -v "INFO\|WARN\|ERROR" | tail -30
done
.venv/bin/difflsrec kafka stop --data-dir /tmp/kfetch3
