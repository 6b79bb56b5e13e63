"""The benchmarks' load generator and output reader (stream/loadgen.py), against the real broker."""

from __future__ import annotations

import json
import time

import pytest

from stream.loadgen import HarnessLoop, OutputCollector, PacedProducer, emit_time, event_number, model_version
from stream.schemas import dump_recommendation


def test_fields_are_read_from_the_bytes_of_a_recommendation():
    value = dump_recommendation(
        {
            "user_id": "u1", "items": [{"item_id": "i2", "score": 1.5}], "model_version": "v-7", "source": {"event_id": "b42"},
            "event_time": 1.0e9, "emit_time": 1764220000.123456, "strategy": "diffusion", "replay": False,
        }
    )
    assert event_number(value) == 42
    assert emit_time(value) == pytest.approx(1764220000.123456, abs=1e-6)
    assert model_version(value) == "v-7"
    forwarded = b'{"user_id":"u1","item_id":"i9","timestamp":1000000000,"event_id":"b7"}'  # the pass-through's output
    assert (event_number(forwarded), emit_time(forwarded), model_version(forwarded)) == (7, None, None)
    assert event_number(b'{"user_id":"u1"}') is None


@pytest.mark.kafka
def test_paced_events_go_out_at_the_rate_and_come_back_with_their_times(kafka_bootstrap, kafka_topic):
    topic = kafka_topic(partitions=2, prefix="loadgen")
    events = [(f"u{n % 7}".encode(), json.dumps({"user_id": f"u{n % 7}", "event_id": f"b{n}"}, separators=(",", ":")).encode()) for n in range(400)]
    sent_at: dict[int, float] = {}
    with HarnessLoop() as loop:
        reader = OutputCollector(kafka_bootstrap, topic, loop)
        producer = PacedProducer(kafka_bootstrap, topic, loop)
        try:
            started = producer.pace(events, range(0, 100), 1000.0, sent_at)  # a first phase (as the warm-up)
            assert reader.wait_for(range(0, 100), timeout=30)
            t0 = time.time()
            started = producer.pace(events, range(100, 400), 500.0, sent_at)
            took = time.time() - t0
            assert reader.wait_for(range(100, 400), timeout=30)
        finally:
            producer.close()
            reader.close()
    assert 0.55 <= took < 3.0  # 300 events at 500/s: the last one is due 0.598 s after the start
    assert sent_at[100] >= started and sent_at[399] - started >= 299 / 500.0 - 1e-3
    for n in range(400):  # each read back, after its send, with the record's own timestamp
        assert sent_at[n] - 0.01 <= reader.produced[n] <= reader.received[n] + 0.01
    assert sorted(reader.received) == list(range(400)) and reader.emitted == {}
