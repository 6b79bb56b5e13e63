#!/bin/bash
# The framework's ceiling with and without a table: `max` (30,000-event backlog, 1,000 users at a time) of the
# pass-through, the pass-through that also writes each user's last event of a batch into a table on the worker's
# store (PASSTHROUGH_TABLE=1), and the worker, alternated on one warm broker.
# Usage: bash results/stream-2026-12-07/table_ceiling.sh OUTDIR [ROUNDS]
set -u
OUT=${1:?out dir}; ROUNDS=${2:-3}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
D=$(mktemp -d /tmp/ceiling-kafka-XXXX)
.venv/bin/difflsrec kafka start --data-dir "$D" --port 39194 > "$OUT/kafka.txt" 2>&1
trap '.venv/bin/difflsrec kafka stop --data-dir "$D" >> "$OUT/kafka.txt" 2>&1; rm -rf "$D"' EXIT
run() {  # name, mode, table
  PASSTHROUGH_TABLE=$3 .venv/bin/difflsrec bench stream --artifact runs/ml1m-1ep --bootstrap 127.0.0.1:39194 --loads max --repeat 1 \
    --modes "$2" --interleave 1000 --out "$OUT/$1-$r.json" > "$OUT/$1-$r.out.txt" 2>&1
  echo "$1 $r: $(grep -A1 "load " "$OUT/$1-$r.out.txt" | tr -s ' ' | tr '\n' ' ')"
}
for r in $(seq 1 "$ROUNDS"); do
  run passthrough passthrough 0
  run passthrough-table passthrough 1
  run worker worker 0
done
