"""`difflsrec send` and `difflsrec follow` as a user runs them: the console script in a subprocess, a real
worker on the real broker, and the pieces of stream/console.py on their own."""

from __future__ import annotations

import base64
import functools
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaConnectionError

from stream.console import dead_letter_json, event_from_options, format_dead_letter, format_recommendation, format_record, numbered_lines
from stream.kafka import find_free_port
from stream.process import settings_env
from stream.producer import EventProducer, TopicReader
from stream.schemas import DeadLetter, EventSource, Limits, Reason, Recommendation, RecommendedItem, check_event
from stream.topics import require_reachable
from tests.processes import difflsrec as run_difflsrec
from tests.stream.helpers import load, offline_top_n
from tests.stream.worker_harness import Deployment

difflsrec = functools.partial(run_difflsrec, timeout=120)


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT's default disposition in the child, as a terminal's Ctrl-C finds it: a test run started in the
    background (``nohup ... &``, as CI may be) ignores SIGINT, and Python then never turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---- without Kafka -----------------------------------------------------------------------------------------

def test_an_event_from_options_passes_the_workers_checks_with_its_time_as_typed():
    limits = Limits()
    event = check_event(event_from_options("u1", "i9", timestamp="2001-01-01T10:00:00", rating=4.5), limits)
    assert (event.user_id, event.item_id, event.timestamp, event.rating) == ("u1", "i9", 978343200.0, 4.5)
    assert event.event_id.startswith("cli-")
    assert check_event(event_from_options("u1", "i9", timestamp="1700000000000"), limits).timestamp == 1_700_000_000.0
    before = time.time()
    assert before - 1 <= check_event(event_from_options("u1", "i9"), limits).timestamp <= time.time() + 1  # default: now
    assert event_from_options("u1", "i9", event_id="mine") != event_from_options("u1", "i9", event_id="mine2")
    assert check_event(event_from_options("u1", "i9", timestamp="yesterday"), limits)[0] is Reason.INVALID_VALUE


def test_numbered_lines_skip_blank_lines_keep_their_numbers_and_read_gzip(tmp_path):
    lines = [b'{"a": 1}', b"", b"  ", b'{"b": 2}']
    plain, packed = tmp_path / "e.jsonl", tmp_path / "e.jsonl.gz"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    packed.write_bytes(gzip.compress(b"\n".join(lines)))
    assert list(numbered_lines(plain)) == list(numbered_lines(packed)) == [(1, b'{"a": 1}'), (4, b'{"b": 2}')]
    # gzip is known by its bytes, not its name; a UTF-8 byte-order mark is not part of line 1's JSON
    misnamed, bom = tmp_path / "e.GZ.txt", tmp_path / "bom.jsonl"
    misnamed.write_bytes(packed.read_bytes())
    bom.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))
    assert list(numbered_lines(misnamed)) == list(numbered_lines(bom)) == [(1, b'{"a": 1}'), (4, b'{"b": 2}')]
    # a gzip cut short: the lines before the cut, then an error that names the file and the place
    many = b"".join(json.dumps({"n": n, "pad": "x" * 40}).encode() + b"\n" for n in range(5000))
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(gzip.compress(many)[:2000])
    got = []
    with pytest.raises(ValueError, match=r"cut.jsonl.gz: unreadable gzip after line \d+: Compressed file ended"):
        got.extend(numbered_lines(truncated))
    assert got and [n for n, _ in got] == list(range(1, len(got) + 1))


def _recommendation(**changes) -> Recommendation:
    fields = dict(
        user_id="u1", items=[RecommendedItem(item_id="i3", score=0.91234), RecommendedItem(item_id="item-long", score=0.5)],
        model_version="v7", event_id="e1", source=EventSource(topic="in", partition=2, offset=40, timestamp_ms=1_700_000_000_000),
        as_of_offset=40, as_of_event_id="e1", event_time=978343200.0, emit_time=1_700_000_000.035, strategy="diffusion",
    )
    return Recommendation(**{**fields, **changes})


def test_a_recommendation_reads_as_its_list_with_where_it_came_from():
    text = format_recommendation(_recommendation())
    head, first, second = text.splitlines()
    assert head.startswith("u1: 2 items after event e1 at 2001-01-01 10:00:00.000Z (in/2/40); model v7, diffusion, 35 ms after")
    assert first.split() == ["1.", "i3", "0.9123"] and second.split() == ["2.", "item-long", "0.5000"]
    later = format_recommendation(_recommendation(as_of_offset=42, as_of_event_id="e3", replay=True))
    assert "list as of the user's later event e3 in the same batch" in later and "redelivered event" in later


def test_a_record_not_of_its_topics_shape_is_shown_not_dropped():
    record = ConsumerRecord("out", 0, 0, 5, 0, 0, b"u1", b"garbage", [], None, 2, 7, 0)  # kafka-python's own record type
    assert format_record("recommendations", record, as_json=False).startswith("out/0/5: unreadable as recommendations (")
    assert json.loads(format_record("dlq", record, as_json=True))["value"] == "garbage"  # no headers: not a dead letter
    assert format_record("interactions", record, as_json=False) == "out/0/5 u1: garbage"
    # a malformed raw event is still one JSON object per line in --json, and a multi-line JSON value one line
    assert json.loads(format_record("interactions", record, as_json=True)) == {"unreadable": "out/0/5", "error": "not JSON", "value": "garbage"}
    spread = record._replace(value=b'{"user_id": "u1",\n "item_id": "i2"}')
    assert format_record("interactions", spread, as_json=True) == '{"user_id":"u1","item_id":"i2"}'


def test_times_no_calendar_has_are_shown_not_fatal():
    far = _recommendation(event_time=1e20)
    assert "at epoch 1e+20 " in format_recommendation(far)
    for when in (1e20, float("inf"), float("nan")):
        letter = DeadLetter(reason=Reason.NOT_JSON, detail="d", topic="in", partition=0, offset=1, rejected_at=when, raw=b"x")
        assert "rejected at epoch " in format_dead_letter(letter)
        json.loads(json.dumps(dead_letter_json(letter), allow_nan=False))  # valid JSON: no NaN or Infinity


def test_events_are_published_as_utf8_not_escaped():
    """An event of three 256-character CJK ids is 2.4 KB as its user wrote it; \\u-escaped it was 4.7 KB, over the
    worker's 4,096-byte limit, and was refused as oversize although the worker would have taken the line."""
    line = json.dumps({"user_id": "字" * 256, "item_id": "字" * 256, "event_id": "字" * 256, "timestamp": 978343200}, ensure_ascii=False).encode()
    event = check_event(line, Limits())
    value = EventProducer.encode(event)
    assert len(value) <= 4096 and check_event(value, Limits()) == event


# ---- on the broker, with a worker ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deployment(kafka_bootstrap, tiny_artifact_dir, tmp_path_factory):
    deployment = Deployment(kafka_bootstrap, tiny_artifact_dir, tmp_path_factory.mktemp("console"))
    try:
        deployment.start_worker("w1", find_free_port())
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def env(deployment):
    """What a user's shell would hold: the cluster and the deployment's topic names."""
    names = ("interactions_topic", "recommendations_topic", "dlq_topic", "model_updates_topic", "partitions")
    return settings_env(deployment.bootstrap, **{name: deployment.settings[name] for name in names})


@pytest.mark.kafka
@pytest.mark.slow
def test_send_and_follow_as_a_user_uses_them(deployment, env, tiny_artifact_dir):
    artifact = load(tiny_artifact_dir)
    # one event from options, waiting for the worker's answer: the list the offline model gives that history
    one = difflsrec("send", "--user", "cli-a", "--item", "i3", "--timestamp", "2001-01-01T10:00:00", "--event-id", "a1", "--wait", "--json", env=env)
    assert one.returncode == 0, one.stderr
    (outcome,) = json_lines(one.stdout)
    assert outcome["outcome"] == "recommendation" and outcome["event_id"] == "a1"
    rec = Recommendation.model_validate(outcome["recommendation"])
    assert (rec.source.topic, rec.source.partition, rec.source.offset) == (outcome["topic"], outcome["partition"], outcome["offset"])
    ids, scores = offline_top_n(artifact, ["i3"], [978343200.0], n=5)
    assert [item.item_id for item in rec.items] == ids
    np.testing.assert_allclose([item.score for item in rec.items], scores, rtol=1e-4, atol=1e-5)
    assert "sent 1 event(s)" in one.stderr and "1 recommendation(s), 0 dead letter(s), 0 none" in one.stderr

    # a file from standard input: good lines are served, bad ones refused with their line and reason, exit 1
    lines = [
        {"user_id": "cli-a", "item_id": "i5", "timestamp": 978343300, "review": "x" * 6000},  # extra field: dropped, not oversize
        "not json",
        {"user_id": "cli-b", "item_id": "i4"},
        {"user_id": "cli-b", "item_id": "i4", "timestamp": 12},
        {"user_id": "cli-b", "item_id": "i4", "timestamp": 978343400, "event_id": "b1"},
    ]
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    batch = difflsrec("send", "--file", "-", "--wait", "--json", stdin=text, env=env)
    assert batch.returncode == 1, batch.stderr
    out = json_lines(batch.stdout)
    refused = {o["line"]: o["reason"] for o in out if o["outcome"] == "refused"}
    assert refused == {2: "not_json", 3: "missing_field", 4: "timestamp_out_of_range"}
    served = {o["line"]: o for o in out if o["outcome"] == "recommendation"}
    assert sorted(served) == [1, 5] and served[5]["recommendation"]["event_id"] == "b1"
    assert served[1]["recommendation"]["user_id"] == "cli-a" and len(served[1]["recommendation"]["items"]) == 5

    # an event the worker rejects (its future-skew limit is tighter than this shell's): the dead letter, exit 1
    ahead = str(int(time.time()) + 3 * 86_400)
    rejected = difflsrec("send", "--user", "cli-c", "--item", "i2", "--timestamp", ahead, "--wait", env={**env, "DIFFLSREC_MAX_FUTURE_SKEW": "864000"})
    assert rejected.returncode == 1 and rejected.stdout.startswith("dead letter: timestamp_out_of_range: "), rejected.stdout + rejected.stderr
    assert "0 recommendation(s), 1 dead letter(s), 0 none" in rejected.stderr

    # follow: only the user asked for, from the beginning, in order, as text and as JSON
    followed = difflsrec("follow", "--user", "cli-a", "--from-beginning", "--count", "2", "--timeout", "30", env=env)
    assert followed.returncode == 0, followed.stderr
    heads = [line for line in followed.stdout.splitlines() if not line.startswith(" ")]
    assert len(heads) == 2 and all(h.startswith("cli-a: 5 items after event ") for h in heads), followed.stdout
    assert "event a1 at 2001-01-01 10:00:00.000Z" in heads[0]
    # read from cli-a's one partition: the one its events went to (the topics have the same partition count)
    assert f"(partition {outcome['partition']} of " in followed.stderr, followed.stderr
    as_json = difflsrec("follow", "recommendations", "--user", "cli-b", "--from-beginning", "--count", "1", "--timeout", "30", "--json", env=env)
    assert [r["event_id"] for r in json_lines(as_json.stdout)] == ["b1"], as_json.stdout + as_json.stderr
    letters = difflsrec("follow", "dlq", "--from-beginning", "--count", "1", "--timeout", "30", "--json", env=env)
    (letter,) = json_lines(letters.stdout)
    assert letter["reason"] == "timestamp_out_of_range" and json.loads(letter["raw"])["user_id"] == "cli-c"
    assert base64.b64decode(letter["raw_base64"]) == letter["raw"].encode()
    # a dead letter keyed wrongly is found by the user the rejected event names
    with deployment.producer() as producer:
        producer.send_raw(b"not-cli-d", json.dumps({"user_id": "cli-d", "item_id": "i1", "timestamp": 978343200}).encode())
    mine = difflsrec("follow", "dlq", "--user", "cli-d", "--from-beginning", "--count", "1", "--timeout", "60", "--json", env=env)
    assert [d["reason"] for d in json_lines(mine.stdout)] == ["key_mismatch"], mine.stdout + mine.stderr
    events = difflsrec("follow", "interactions", "--user", "cli-b", "--from-beginning", "--count", "1", "--timeout", "30", "--json", env=env)
    assert json_lines(events.stdout) == [{"user_id": "cli-b", "item_id": "i4", "timestamp": 978343400.0, "event_id": "b1"}]

    # fewer records than --count before the timeout: says so, exit 1
    short = difflsrec("follow", "--user", "cli-b", "--from-beginning", "--count", "2", "--timeout", "3", env=env)
    assert short.returncode == 1 and "1 of 2 record(s) within 3 s without a new one" in short.stderr, short.stderr


@pytest.mark.kafka
def test_send_without_a_worker_says_nobody_answered_and_follow_names_a_missing_topic(kafka_bootstrap, tmp_path):
    suffix = tmp_path.name[-12:].replace("_", "-")
    env = settings_env(kafka_bootstrap, interactions_topic=f"lonely-in-{suffix}", recommendations_topic=f"lonely-out-{suffix}",
                       dlq_topic=f"lonely-dlq-{suffix}", model_updates_topic=f"lonely-mu-{suffix}", partitions=2)
    result = difflsrec("send", "--user", "u1", "--item", "i1", "--wait", "--timeout", "2", env=env)
    assert result.returncode == 1
    assert "u1: no answer to event cli-" in result.stdout and "within 2 s" in result.stdout, result.stdout
    assert "hint: no answer means no worker consumed the events" in result.stderr, result.stderr
    assert f"created topic lonely-in-{suffix} (2 partitions) on {kafka_bootstrap}: it did not exist" in result.stderr, result.stderr

    # an event the broker refuses (this topic takes record batches of at most 250 bytes): reported, exit 1
    with KafkaAdminClient(bootstrap_servers=kafka_bootstrap) as admin:
        admin.create_topics([NewTopic(f"tiny-{suffix}", 1, 1, topic_configs={"max.message.bytes": "250"})], wait_for_metadata=True)
    fits = difflsrec("send", "--topic", f"tiny-{suffix}", "--user", "u1", "--item", "i1", "--json", env=env)
    assert fits.returncode == 0 and json_lines(fits.stdout)[0]["outcome"] == "sent", fits.stdout + fits.stderr
    assert "created topic" not in fits.stderr  # it existed
    too_big = difflsrec("send", "--topic", f"tiny-{suffix}", "--user", "u1", "--item", "i" * 250, "--json", env=env)
    assert too_big.returncode == 1, too_big.stderr
    (out,) = json_lines(too_big.stdout)
    assert out["outcome"] == "refused" and out["reason"] == "delivery" and "MessageSizeTooLarge" in out["detail"], out

    # a pipe that stays open: each event's outcome shows while the input waits; Ctrl-C reports what was sent
    typing = subprocess.Popen([sys.executable, "-m", "difflsrec.cli", "send", "--file", "-", "--json"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env}, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        for n in range(2):
            typing.stdin.write(json.dumps({"user_id": "u2", "item_id": f"i{n}", "timestamp": 978343200 + n}).encode() + b"\n")
            typing.stdin.flush()
            line = typing.stdout.readline()  # before any more input: not held back until the end
            assert json.loads(line)["outcome"] == "sent" and json.loads(line)["line"] == n + 1, line
        typing.send_signal(signal.SIGINT)
        out, err = typing.communicate(timeout=60)
    finally:
        typing.kill()
    assert typing.returncode == 130, err
    assert f"sent 2 event(s) to lonely-in-{suffix}" in err.decode() and "interrupted after line 2" in err.decode(), err
    # with --wait, Ctrl-C says which events it stopped waiting for (not "no answer within 30 s")
    waiting = subprocess.Popen([sys.executable, "-m", "difflsrec.cli", "send", "--file", "-", "--wait"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env}, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        waiting.stdin.write(json.dumps({"user_id": "u3", "item_id": "i1", "timestamp": 978343200, "event_id": "w1"}).encode() + b"\n")
        waiting.stdin.flush()
        with TopicReader(kafka_bootstrap, f"lonely-in-{suffix}") as published:  # on the topic: now waiting for its answer
            assert any(record.key == b"u3" for record in published.records(timeout=30))
        waiting.send_signal(signal.SIGINT)
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 130 and out.decode().strip() == "u3: no answer to event w1 not waited for (stopped early)", (out, err)
    assert "answers: 0 recommendation(s), 0 dead letter(s), 1 none; interrupted after line 1" in err.decode(), err

    watching = subprocess.Popen([sys.executable, "-m", "difflsrec.cli", "follow", "--count", "3"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, **env}, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        assert b"following lonely-out-" in watching.stderr.readline()
        watching.send_signal(signal.SIGINT)
        out, err = watching.communicate(timeout=60)
    finally:
        watching.kill()
    assert watching.returncode == 130 and b"interrupted after 0 record(s) of 3" in err, err

    missing = difflsrec("follow", "--topic", f"nothing-{suffix}", "--timeout", "1", env=env)
    assert missing.returncode == 1 and f"error: topic 'nothing-{suffix}' does not exist on {kafka_bootstrap}" in missing.stderr, missing.stderr


def test_send_checks_its_options_before_it_contacts_kafka(tmp_path):
    nobody = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{find_free_port()}"}
    both = difflsrec("send", "--user", "u1", "--item", "i1", "--file", str(tmp_path / "e.jsonl"), env=nobody)
    assert both.returncode == 2 and "give one event with --user and --item, or a file" in both.stderr
    half = difflsrec("send", "--user", "u1", env=nobody)
    assert half.returncode == 2 and "give one event with --user and --item" in half.stderr
    mixed = difflsrec("send", "--file", str(tmp_path / "e.jsonl"), "--rating", "5", env=nobody)
    assert mixed.returncode == 2 and "a file's lines carry their own" in mixed.stderr
    missing = difflsrec("send", "--file", str(tmp_path / "e.jsonl"), env=nobody)
    assert missing.returncode == 1 and f"error: event file not found: {tmp_path / 'e.jsonl'}" in missing.stderr
    idle = difflsrec("send", "--user", "u1", "--item", "i1", "--timeout", "5", env=nobody)
    assert idle.returncode == 2 and "without --wait nothing waits" in idle.stderr
    folder = difflsrec("send", "--file", str(tmp_path), env=nobody)
    assert folder.returncode == 1 and f"error: {tmp_path} is a directory, not an event file" in folder.stderr
    no_broker = difflsrec("send", "--user", "u1", "--item", "i1", env=nobody)
    assert no_broker.returncode == 1 and "hint: no Kafka broker answers" in no_broker.stderr, no_broker.stderr


def test_require_reachable_takes_any_answering_server_and_fails_fast_without_one():
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        require_reachable(f"nohost.invalid:9092, 127.0.0.1:{find_free_port()},127.0.0.1:{port}")  # the third answers
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="no Kafka broker answers at 127.0.0.1:"):
        require_reachable(f"127.0.0.1:{find_free_port()}")
    assert time.monotonic() - started < 3
