#!/bin/bash
# Worker-only `max` (30,000-event backlog, 1,000 users at a time) with Python's GC thresholds and with raised ones,
# alternated on one warm broker. Usage: [LOADS=1000] [EXTRA=""] bash results/stream-2026-12-07/gc_threshold_ab.sh OUTDIR [ROUNDS]
# (EXTRA replaces "--interleave 1000"; EXTRA="" replays ML-1M in time order)
set -u
OUT=${1:?out dir}; ROUNDS=${2:-3}; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
D=$(mktemp -d /tmp/gcab-kafka-XXXX)
.venv/bin/difflsrec kafka start --data-dir "$D" --port 39192 > "$OUT/kafka.txt" 2>&1
trap '.venv/bin/difflsrec kafka stop --data-dir "$D" >> "$OUT/kafka.txt" 2>&1; rm -rf "$D"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for arm in default raised; do
    if [ $arm = raised ]; then export DIFFLSREC_GC_THRESHOLD='[50000, 20, 100]'; else export DIFFLSREC_GC_THRESHOLD='[700, 10, 10]'; fi  # Python's own (the worker's default until 2026-12-07)
    .venv/bin/difflsrec bench stream --artifact runs/ml1m-1ep --bootstrap 127.0.0.1:39192 --loads ${LOADS:-max} --repeat 1 \
      --modes worker ${EXTRA---interleave 1000} --out "$OUT/$arm-$r.json" > "$OUT/$arm-$r.out.txt" 2>&1
    echo "$arm $r: $(grep -A1 "load " "$OUT/$arm-$r.out.txt" | tr -s ' ' | tr '\n' ' ')"
  done
done
