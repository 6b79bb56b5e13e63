"""CPU cost of the worker's own serving steps per event, without Kafka or Faust.

    .venv/bin/python benchmarks/bench_engine.py --artifact DIR [--events 40000] [--batches 256,20] [--repeat 3] [--interleave N]

Replays the ML-1M ratings in time order, or N users at a time (the events ``difflsrec bench stream`` sends), cuts them into
micro-batches of each size and runs exactly what ``stream.app`` does per batch besides Faust: parse and
validate every event, read each user's state from its table bytes, ``Engine.process``, serialise every
recommendation and write each user's state back as bytes (the table is a dict here). Prints CPU
microseconds per event per stage (median over repeats, each a fresh table), the share of the worker's
CPU budget they take, and the batch composition (events and users per batch).

The garbage collector is handled as the worker handles it (``--gc frozen``, the default): one collection,
``gc.freeze()`` and the worker's ``GC_THRESHOLD`` once the model is loaded (``stream.app.settle_heap``), so the
model's and the libraries' long-lived objects are not rescanned by every full collection. ``--gc default`` leaves
the collector as Python starts it, as this script did before 2026-12-07: with 1,000 users at a time that cost
~30 us per event (state decoding and event parsing allocate the objects that trigger collections), a cost the
worker does not pay.

``difflsrec bench stream`` measures the whole worker against a pass-through Faust agent; the difference
between the two per-event CPU costs is what these stages cost inside the worker (plus the table's
changelog messages), so this is where to look when the worker falls short of the pass-through.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.faiss_blas import blas_report, faiss  # noqa: E402
from stream.app import settle_heap  # noqa: E402
from stream.bench import replay_events  # noqa: E402
from stream.engine import Engine, ModelBundle, SourcedEvent  # noqa: E402
from stream.schemas import Limits, dump_recommendation, parse_event  # noqa: E402
from stream.settings import WorkerSettings  # noqa: E402
from stream.state import decode_state, encode_state  # noqa: E402

STAGES = ("parse", "state_read", "reencode", "long_step", "fuse", "search", "messages", "publish", "state_write")


def run(engine: Engine, events: list[tuple[bytes, bytes]], batch: int, partitions: int = 4) -> tuple[dict[str, float], float, float, float]:
    """One pass over ``events`` in batches of ``batch`` with an empty table: CPU seconds per stage, mean
    users per batch, total CPU seconds, total wall seconds (they differ when the model is on a GPU: the
    host waits for the device without spending CPU)."""
    limits = Limits()
    table: dict[bytes, bytes] = {}
    totals = dict.fromkeys(STAGES, 0.0)
    users_per_batch = []
    started, wall = time.thread_time(), time.perf_counter()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        t0 = time.thread_time()
        valid = []
        for offset, (key, value) in enumerate(chunk, start):
            parsed = parse_event(key, value, limits)
            valid.append(SourcedEvent(parsed, "interactions", hash(key) % partitions, offset, 0))
        t1 = time.thread_time()
        states = {}
        for sourced in valid:
            user = sourced.event.user_id
            if user not in states:
                raw = table.get(user.encode())
                states[user] = None if raw is None else decode_state(raw)
        t2 = time.thread_time()
        result = engine.process(valid, states)
        t3 = time.thread_time()
        payloads = [dump_recommendation(rec) for rec in result.recommendations]
        t4 = time.thread_time()
        for user, state in result.states.items():
            table[user.encode()] = encode_state(state)
        t5 = time.thread_time()
        totals["parse"] += t1 - t0
        totals["state_read"] += t2 - t1
        for stage, seconds in result.timings.items():
            totals[stage] += seconds
        totals["publish"] += t4 - t3
        totals["state_write"] += t5 - t4
        users_per_batch.append(len(states))
        assert len(payloads) == len(chunk)
    return totals, statistics.mean(users_per_batch), time.thread_time() - started, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--ratings", type=Path, default=None, help="interaction file replayed (default: ml-1m)")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batches", default="256,20", help="micro-batch sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inference-steps", type=int, default=None)
    parser.add_argument("--interleave", type=int, default=None, help="replay N users at a time, round-robin (default: global time order); see stream.bench.replay_events")
    parser.add_argument("--index-kind", default=None, choices=("flat", "ivf", "hnsw"), help="the item index the engine searches (the worker's INDEX_KIND; default: the artifact's own)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda: where the model runs (FAISS stays on the host with faiss-cpu)")
    parser.add_argument("--gc", default="frozen", choices=("frozen", "default"), help="frozen: collect, gc.freeze() and the worker's GC_THRESHOLD after loading, as the worker does; default: leave the collector as Python starts it")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the worker's default (stream/settings.py: threads), for torch and faiss alike
    faiss.omp_set_num_threads(1)
    bundle = ModelBundle.load(args.artifact, device=args.device, inference_steps=args.inference_steps, index_kind=args.index_kind)
    engine = Engine(bundle)
    events = replay_events(args.ratings, args.events, args.interleave)
    run(engine, events[:2_000], 256)  # warm-up: CUDA context, kernels, allocator; TorchScript's profiling runs
    if args.gc == "frozen":  # as stream.app.run_faust_worker does before the worker starts
        settle_heap(WorkerSettings().gc_threshold)
    order = "time order" if args.interleave is None else f"{args.interleave} users at a time"
    print(f"{len(events)} events ({order}), model {bundle.version}, {bundle.model.config.inference_steps} inference steps, {bundle.device}, {bundle.index.kind} index, 1 thread, gc {args.gc}")
    print(blas_report())
    for batch in (int(b) for b in args.batches.split(",")):
        runs = [run(engine, events, batch) for _ in range(args.repeat)]
        n = len(events)
        per_stage = {s: 1e6 * statistics.median(r[0][s] for r in runs) / n for s in STAGES}
        total = 1e6 * statistics.median(r[2] for r in runs) / n
        wall = 1e6 * statistics.median(r[3] for r in runs) / n
        print(f"batch {batch:4d} ({runs[0][1]:.1f} users per batch): {total:6.1f} us CPU / {wall:6.1f} us wall per event; "
              + ", ".join(f"{s} {v:.1f}" for s, v in per_stage.items()))


if __name__ == "__main__":
    main()
