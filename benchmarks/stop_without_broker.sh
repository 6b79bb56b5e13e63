#!/bin/bash
# How long a worker takes to stop on SIGTERM when its broker has gone (stream/README.md, "Stopping when
# the broker is gone or frozen"). One private broker and one worker per run; prints the exit code and time.
#   benchmarks/stop_without_broker.sh idle|served|pending|frozen [ARTIFACT]
#   idle:    the worker has served nothing; the broker is stopped
#   served:  200 events served shortly before the broker is stopped (the last ones not yet committed)
#   pending: 20,000 events produced and the broker SIGKILLed while the worker serves them (output pending)
#   frozen:  200 events served, then the broker is frozen with SIGSTOP
# Worker settings come from the environment as usual (e.g. DIFFLSREC_STOP_TIMEOUT=8).
set -u
case=${1:?idle|served|pending|frozen}; artifact=${2:-runs/ml1m-capped/models/difflsrec/seed0}
cd "$(git rev-parse --show-toplevel)"
work=$(mktemp -d /tmp/stop-without-broker.XXXX); broker_dir=$work/kafka
port=$((40000 + RANDOM % 10000)); web=$((port + 1)); controller=$((port + 2))
.venv/bin/difflsrec kafka start --data-dir "$broker_dir" --port $port --controller-port $controller >/dev/null
broker_pid=$(cat "$broker_dir/kafka.pid")
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port
.venv/bin/difflsrec --threads 1 worker --artifact "$artifact" --app-id "stop-$case" --web-port $web \
    --data-dir "$work/worker" > "$work/worker.txt" 2>&1 &
worker=$!
for _ in $(seq 120); do curl -sf "127.0.0.1:$web/health" >/dev/null && break; sleep 1; done
events=200; [ "$case" = pending ] && events=20000
.venv/bin/python - "$port" "$events" "$case" "$broker_pid" <<'PY'
import os, signal, sys, time
from stream.producer import EventProducer
port, events, case, broker = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if case != "idle":
    with EventProducer(f"127.0.0.1:{port}", "interactions") as producer:
        for k in range(events):
            producer.send({"user_id": f"u{k % 500}", "item_id": str(1 + k % 3000), "timestamp": 1_000_000_000 + k, "event_id": f"{case}-{k}"})
if case == "pending":
    time.sleep(0.2)  # the worker has fetched a first part and is serving it
    os.kill(broker, signal.SIGKILL)
PY
sleep 0.5
curl -s "127.0.0.1:$web/metrics" | grep -E "^difflsrec_recommendations_out_total"
case $case in
    idle|served) .venv/bin/difflsrec kafka stop --data-dir "$broker_dir" >/dev/null 2>&1 ;;
    frozen) kill -STOP "$broker_pid" ;;
esac
sleep 3  # the consumer notices: fetches fail and wait in their retry back-off
started=$(date +%s.%N); kill -TERM $worker
while kill -0 $worker 2>/dev/null && [ "$(echo "$(date +%s.%N) - $started < 150" | bc)" = 1 ]; do sleep 0.1; done
took=$(echo "$(date +%s.%N) - $started" | bc)
if kill -0 $worker 2>/dev/null; then echo "$case: still running after $took s: killed"; kill -9 $worker; else wait $worker; echo "$case: exit $? after $took s"; fi
grep -E "offset commit gave up|did not close cleanly|graceful stop did not finish" "$work/worker.txt" | cut -c1-160
[ "$case" = frozen ] && kill -CONT "$broker_pid"
.venv/bin/difflsrec kafka stop --data-dir "$broker_dir" >/dev/null 2>&1
rm -rf "$work"
