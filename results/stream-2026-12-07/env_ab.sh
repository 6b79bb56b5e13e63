#!/bin/bash
# Worker-only `difflsrec bench stream` with one setting at two values, alternated on one warm broker (the
# 1-epoch ML-1M model). Usage:
#   [MODES=worker] [LOADS=max] [EXTRA="--interleave 1000"] bash results/stream-2026-12-07/env_ab.sh OUTDIR ROUNDS VAR VALUE_A VALUE_B
# e.g. ... env_ab.sh results/stream-2026-12-07/wal-ab 3 DIFFLSREC_STORE_WAL true false
set -u
OUT=${1:?out dir}; ROUNDS=${2:?rounds}; VAR=${3:?variable}; A=${4?value a}; B=${5?value b}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
D=$(mktemp -d /tmp/envab-kafka-XXXX)
.venv/bin/difflsrec kafka start --data-dir "$D" --port 39193 > "$OUT/kafka.txt" 2>&1
trap '.venv/bin/difflsrec kafka stop --data-dir "$D" >> "$OUT/kafka.txt" 2>&1; rm -rf "$D"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for value in "$A" "$B"; do
    name=$(echo "$value" | tr -c 'A-Za-z0-9\n' '_')
    env "$VAR=$value" .venv/bin/difflsrec bench stream --artifact runs/ml1m-1ep --bootstrap 127.0.0.1:39193 --loads ${LOADS:-max} \
      --repeat 1 --modes ${MODES:-worker} ${EXTRA---interleave 1000} --out "$OUT/$name-$r.json" > "$OUT/$name-$r.out.txt" 2>&1
    echo "$VAR=$value $r: $(grep -A1 "load " "$OUT/$name-$r.out.txt" | tr -s ' ' | tr '\n' ' ')"
  done
done
