"""The worker's Prometheus metrics, in a registry of their own (served at GET /metrics).

A private registry, not prometheus_client's global one, so that two apps in one process (tests) do not
collide and the page shows exactly the worker's series.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# event-to-recommendation latency: from the input record's Kafka timestamp to our produce call
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.events_in = Counter("difflsrec_events_in", "Interaction records consumed", registry=r)
        self.events_applied = Counter("difflsrec_events_applied", "Events that advanced a user's state", registry=r)
        self.events_replayed = Counter("difflsrec_events_replayed", "Redelivered events recognised as already applied", registry=r)
        self.unknown_items = Counter("difflsrec_unknown_item_events", "Applied events whose item is not in the model's vocabulary", registry=r)
        self.new_users = Counter("difflsrec_new_users", "Users seen for the first time by this worker's tables", registry=r)
        self.seeded = Counter("difflsrec_users_seeded", "New users started from the model artifact's history of them instead of an empty state", registry=r)
        self.reencoded = Counter("difflsrec_states_reencoded", "User states re-encoded because they were computed by another model version", registry=r)
        self.state_errors = Counter("difflsrec_state_decode_errors", "Stored user states that could not be read (the user starts afresh)", registry=r)
        self.recommendations_out = Counter("difflsrec_recommendations_out", "Recommendation messages produced", ["strategy"], registry=r)
        self.dead_letters = Counter("difflsrec_dead_letters", "Events sent to the dead-letter topic", ["reason"], registry=r)
        self.batch_size = Histogram("difflsrec_batch_size", "Valid events per micro-batch", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("difflsrec_batch_seconds", "Wall time to serve one micro-batch (state I/O, model, index, produce)", buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("difflsrec_event_to_recommendation_seconds", "Kafka timestamp of the event to the production of its recommendation", buckets=LATENCY_BUCKETS, registry=r)
        self.stage_seconds = Counter("difflsrec_stage_cpu_seconds", "CPU time of each step of serving batches (where the time goes)", ["stage"], registry=r)
        self.gc_pause = Histogram("difflsrec_gc_pause_seconds", "Garbage-collection pauses of the worker process", ["generation"], buckets=LATENCY_BUCKETS, registry=r)
        self.swaps = Counter("difflsrec_model_swaps", "Hot swaps to a new model version, by what triggered them", ["trigger"], registry=r)
        self.swap_failures = Counter("difflsrec_model_swap_failures", "Announced or published versions that could not be loaded (the old one kept serving)", registry=r)
        self.updates_ignored = Counter("difflsrec_model_updates_ignored", "Announced versions not in the registry this worker serves (another registry's, or a fixed-artifact worker)", registry=r)
        self.model_info = Gauge("difflsrec_model_info", "The model version being served (value 1)", ["version"], registry=r)

    def watch_gc(self) -> None:
        """Time every garbage collection (a full one stalls the event loop and the engine alike)."""
        started: list[float] = [0.0]

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                self.gc_pause.labels(str(info["generation"])).observe(time.perf_counter() - started[0])

        gc.callbacks.append(callback)

    def set_model_version(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)

    def totals(self) -> dict[str, float]:
        """Each counter's total summed over its labels, by metric name (for log lines and tests)."""
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            if metric.type == "counter":
                out[metric.name] = sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)
