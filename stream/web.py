"""HTTP views of the worker (Faust's web server, bound to 127.0.0.1 by default).

GET /recommendations/{user_id}  the latest list sent for the user (404 if none yet; 500 with a JSON error when
                                the stored state cannot be decoded, until the user's next event replaces it)
GET /state/{user_id}            a readable summary of the user's stored state (operators, tests; errors as above)
GET /health                     200 when serving, 503 while the worker rebalances or recovers its tables, or
                                when no bootstrap server accepts a connection (status "broker_unreachable")
GET /metrics                    Prometheus text
GET /consumer                   the consumer's view of each assigned partition (read, committed, fetch position,
                                paused where, prefetched records): why a worker with lag does not consume

The per-user views are routed by Faust to the worker that owns the user's partition, so any worker
answers for every user (503 while that worker does not answer: killed, until the group rebalances).
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import TYPE_CHECKING

import aiohttp
from aiokafka import TopicPartition
from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View

from stream.state import StateFormatError, decode_state

if TYPE_CHECKING:
    from stream.app import StreamWorker


def register_views(worker: StreamWorker) -> None:
    app, users, metrics = worker.app, worker.users, worker.metrics

    def _stored(user_id: str):
        raw = users.get(user_id.encode())
        return None if raw is None else decode_state(raw)

    def _unreadable(web: View, user_id: str, error: StateFormatError) -> Response:
        # a value this code cannot decode (a later state format, a damaged changelog record): say so in JSON,
        # not as aiohttp's bare 500 with a traceback per request; the worker replaces it at the user's next event
        detail = f"the stored state of user {user_id!r} cannot be read ({error}); it is replaced by a fresh state at the user's next event"
        return web.json({"error": detail}, status=500)

    @app.page("/recommendations/{user_id}")
    @owner_unreachable_is_503
    @app.table_route(table=users, match_info="user_id")
    async def recommendations(web: View, request: Request, user_id: str) -> Response:
        try:
            state = _stored(user_id)
        except StateFormatError as error:
            return _unreadable(web, user_id, error)
        if state is None or state.latest is None:
            return web.json({"error": f"no recommendations for user {user_id!r} yet"}, status=404)
        return web.bytes(state.latest, content_type="application/json")

    @app.page("/state/{user_id}")
    @owner_unreachable_is_503
    @app.table_route(table=users, match_info="user_id")
    async def user_state(web: View, request: Request, user_id: str) -> Response:
        try:
            state = _stored(user_id)
        except StateFormatError as error:
            return _unreadable(web, user_id, error)
        if state is None:
            return web.json({"error": f"no state for user {user_id!r}"}, status=404)
        return web.json(
            {
                "user_id": user_id,
                "model_version": state.model_version,
                "event_count": state.event_count,
                "unknown_count": state.unknown_count,
                "last_ts": state.last_ts,
                "history": state.history,
                "window": state.window.tolist(),
                "h": None if state.h is None else state.h.tolist(),
                "offsets": state.offsets,
                "recent_event_ids": state.recent_event_ids,
                "latest": None if state.latest is None else json.loads(state.latest),
            }
        )

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        body = {**readiness(app, worker.settings.interactions_topic), "model_version": worker.bundle.version}
        if body["status"] == "ok" and not await broker_reachable(worker.settings.bootstrap_servers):
            body["status"] = "broker_unreachable"  # it was "ok" while the broker was down: nothing was served
        return web.json(body, status=200 if body["status"] == "ok" else 503)

    @app.page("/consumer")
    async def consumer_view(web: View, request: Request) -> Response:
        return web.json(consumer_state(app))

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; the text is ASCII anyway
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


#: seconds a per-user request forwarded to another worker may take: Faust's HTTP client (aiohttp's default)
#: waits 300 s, and a frozen owner (SIGSTOP) held such requests past 60 s (a local read takes milliseconds)
FORWARD_TIMEOUT = 5.0


def owner_unreachable_is_503(view):
    """A per-user view whose request Faust forwards to the worker owning the user's partition: when that
    worker does not answer (killed, until the group notices after ``session_timeout``; frozen), a 503 the
    client can retry, not a 500 "Server got itself in trouble" and a traceback in the log for every request,
    or a request hanging for 300 s."""

    @functools.wraps(view)
    async def get(web: View, request: Request, **kwargs) -> Response:
        try:
            return await asyncio.wait_for(view(web, request, **kwargs), FORWARD_TIMEOUT)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            return web.json({"error": f"the worker that owns this user's partition does not answer ({error!r}); retry after the group rebalances"}, status=503)

    return get


async def broker_reachable(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection within ``timeout`` (without blocking the loop)."""
    from stream.topics import bootstrap_addresses

    for host, port in bootstrap_addresses(bootstrap_servers):
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError):
            continue
        writer.close()
        return True
    return False


def readiness(app, topic: str) -> dict:
    """``status`` ("ok" once partitions are assigned and tables recovered, else "rebalancing") and the
    partitions of ``topic`` this worker consumes."""
    busy = app.rebalancing or app.in_recovery or not app.tables.recovery.completed.is_set()
    try:
        tps = app.consumer.assignment()
    except ConsumerNotStarted:
        tps = set()
    return {"status": "rebalancing" if busy else "ok", "partitions": sorted(tp.partition for tp in tps if tp.topic == topic)}


def consumer_state(app) -> dict:
    """A snapshot of Faust's and the Kafka client's bookkeeping per assigned partition.

    Faust keeps its own pause set and read/committed offsets, aiokafka (on the consumer's thread) its own
    pause flags, fetch positions and prefetched records; a partition is consumed only when both agree.
    Read without locks from the web handler: a snapshot for diagnosis, exact only when nothing moves."""
    faust_consumer = app.consumer
    try:
        assignment = faust_consumer.assignment()
    except ConsumerNotStarted:
        return {"started": False}
    kafka = getattr(getattr(faust_consumer, "_thread", None), "_consumer", None)
    kafka_assignment = None
    if kafka is not None and kafka._subscription.subscription is not None:
        kafka_assignment = kafka._subscription.subscription.assignment
    prefetched = getattr(getattr(kafka, "_fetcher", None), "_records", {}) or {}
    partitions = []
    for tp in sorted(assignment):
        row = {
            "topic": tp.topic,
            "partition": tp.partition,
            "paused_in_faust": tp in faust_consumer._paused_partitions,
            "read_offset": faust_consumer._read_offset.get(tp),
            "committed_offset": faust_consumer._committed_offset.get(tp),
            "acked_pending": len(faust_consumer._acked.get(tp, ())),
        }
        kafka_tp = TopicPartition(tp.topic, tp.partition)
        if kafka_assignment is not None and kafka_tp in kafka_assignment.tps:
            state = kafka_assignment.state_value(kafka_tp)
            row.update(prefetched=kafka_tp in prefetched, highwater=state.highwater, fetch_position=state._position, paused_in_kafka=state.paused)
        partitions.append(row)
    return {
        "started": True,
        "flow_active": faust_consumer.flow_active,
        "app_flow_control_active": app.flow_control.is_active(),
        "rebalancing": app.rebalancing,
        "in_recovery": app.in_recovery,
        "generation": app.consumer_generation_id,
        "partitions": partitions,
    }
