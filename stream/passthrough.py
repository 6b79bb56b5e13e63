"""A pass-through Faust worker: the framework's own ceiling for the benchmark.

Same app settings, the same micro-batched consumption (``take_events``) and the same producer path
(``send_soon``) as the real worker, but each event's bytes are forwarded unchanged to the
recommendations topic: no parsing, state, model, index or table. ``difflsrec bench stream`` runs it as
``python -m stream.passthrough`` with the worker's ``DIFFLSREC_*`` environment.

``PASSTHROUGH_TABLE=1`` (a benchmark switch, not a worker setting) adds what a stateful worker pays Faust for
its table and nothing else: each user's last event of a batch is written, bytes unchanged, into a table on the
worker's store (one RocksDB put and one changelog message per user and batch, as the worker's state writes).
Against it, the difference to the real worker is the model, the index and the state codec alone.
"""

from __future__ import annotations

import os

import faust
from faust.types import StreamT

from stream.app import as_current, create_faust_app, run_faust_worker, use_event_loop
from stream.settings import WorkerSettings
from stream.web import readiness


def create_passthrough_app(settings: WorkerSettings, partitions: int, with_table: bool = False) -> faust.App:
    s = settings
    if with_table:
        from stream.table_store import STORE_URL, bytes_table

        app = create_faust_app(s, partitions, store=STORE_URL)  # the worker's store and table
        table = bytes_table(app, "last-events", partitions, wal=s.store_wal)
    else:
        app = create_faust_app(s, partitions)  # the worker's consumer, producer and delivery guarantee (and cost)
        table = None
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    source = app.topic(s.interactions_topic, partitions=partitions, **raw)
    sink = app.topic(s.recommendations_topic, partitions=partitions, **raw)

    @app.agent(source, name="forward")
    async def forward(stream: StreamT) -> None:
        stream.enable_acks = False  # as the worker: only take_events acks (stream/app.py)
        async for events in stream.take_events(s.batch_max, within=s.batch_within):
            for event in events:
                sink.send_soon(key=event.message.key, value=event.message.value)
            if table is not None:
                last = {event.message.key: event for event in events}  # one write per user and batch, as the worker's
                for key, event in last.items():
                    with as_current(event):  # the user's own partition
                        table[key] = event.message.value

    @app.page("/health")
    async def health(web, request):
        body = readiness(app, s.interactions_topic)
        return web.json(body, status=200 if body["status"] == "ok" else 503)

    return app


def main() -> None:
    from stream.topics import ensure_topics

    settings = WorkerSettings()
    use_event_loop(settings.event_loop)  # the worker's loop: the same framework ceiling
    app = create_passthrough_app(settings, ensure_topics(settings), with_table=os.environ.get("PASSTHROUGH_TABLE", "") not in ("", "0"))
    run_faust_worker(app, settings.profile, stop_timeout=settings.stop_timeout, log_repeat_window=settings.log_repeat_window, gc_threshold=settings.gc_threshold)  # as the worker does, GC freezing included


if __name__ == "__main__":
    main()
