"""Where the worker's CPU went in the py-spy profile (pyspy.sh): samples per thread and per serving part.

    python3 results/stream-2026-12-07/pyspy_summary.py results/stream-2026-12-07/pyspy-worker.collapsed.gz

py-spy (200 Hz, idle threads left out) sampled the worker for 25 s while it drained a 60,000-event backlog
replayed 1,000 users at a time. A stack is counted once, under the first part (in this order) it passes through.
"""

import collections
import gzip
import sys

PARTS = {  # part -> a frame name that marks it
    "engine (Engine.process, its own thread)": "Engine.process",
    "consumer thread (aiokafka fetching)": "ServiceThread",
    "table writes + publishing (_publish_and_write)": "_publish_and_write",
    "producer path to aiokafka (Faust buffer -> send)": "send_counted",
    "aiokafka sender (requests to the broker)": "Sender",
    "table reads + state decode (_read_states)": "_read_states",
    "changelog acks -> persisted offset": "_on_changelog_sent",
    "parse + validate events": "parse_event",
}
ENGINE_PARTS = {"GRU steps (LongTermStepper)": "LongTermStepper", "fusion (Fusion)": "Fusion", "FAISS search": "IndexFlat.search",
                "recommend bookkeeping (rest of _recommend)": "_recommend", "apply bookkeeping (rest of _apply)": "_apply"}

stacks = [(line.rsplit(" ", 1)[0].split(";"), int(line.rsplit(" ", 1)[1])) for line in gzip.open(sys.argv[1], "rt").read().splitlines()]
total = sum(n for _, n in stacks)
threads = collections.Counter()
parts = collections.Counter()
engine = collections.Counter()
for frames, n in stacks:
    threads["consumer" if any("ServiceThread" in f for f in frames) else "engine" if any("concurrent/futures/thread.py" in f for f in frames) else "event loop"] += n
    part = next((name for name, mark in PARTS.items() if any(mark in f for f in frames)), None)
    if part is None:
        part = "event loop native (uvloop: sockets, callbacks)" if frames[-1].startswith("Worker.execute_from_commandline") else "other Faust / asyncio"
    parts[part] += n
    if part.startswith("engine"):
        engine[next((name for name, mark in ENGINE_PARTS.items() if any(mark in f for f in frames)), "other")] += n
print(f"{total} samples; by thread: " + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in threads.most_common()))
for name, n in parts.most_common():
    print(f"{100 * n / total:5.1f} %  {name}")
print("inside the engine:")
for name, n in engine.most_common():
    print(f"{100 * n / total:5.1f} %  {name}")
