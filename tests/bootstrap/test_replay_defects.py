"""`difflsrec replay` defects found in review: dead letters that stalled a user's events, a replay that no worker
answered exiting 0, unchecked options, a progress bar that refreshed per 200 events, Ctrl-C without a report, 30 s to
notice that no broker answers. On the real broker, with a real worker where the behaviour needs one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bootstrap import cli
from bootstrap import replay as replay_module
from bootstrap.replay import ReplayOptions
from stream.kafka import find_free_port
from stream.process import settings_env

T0 = 950_000_000  # 2000-02-08: accepted by every limit below


def _csv(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


def _interleaved(n_users: int, per_user: int, start: int = T0, prefix: str = "u") -> list[tuple[str, str, int]]:
    """Events of ``n_users`` users, interleaved in time, items i1..i30 (the tiny artifact's)."""
    return [(f"{prefix}{u}", f"i{1 + (u * 7 + k * 3) % 30}", start + 10 * (k * n_users + u)) for k in range(per_user) for u in range(n_users)]


def _invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli.app, ["replay", *args], env={"COLUMNS": "250", **env}, catch_exceptions=False)


# ---- options, summary, exit code: no broker needed -------------------------------------------------------------

@pytest.mark.parametrize(("args", "option"), [
    (["--rate", "-5"], "--rate"), (["--rate", "0"], "--rate"), (["--rate", "nan"], "--rate"), (["--speed", "-2"], "--speed"),
    (["--speed", "0"], "--speed"), (["--speed", "2", "--rate", "5"], "--speed/--rate"), (["--max-events", "-3"], "--max-events"),
    (["--max-events", "0"], "--max-events"), (["--k", "0"], "--k"), (["--windows", "0"], "--windows"), (["--users", "0"], "--users"),
    (["--drain-timeout", "0"], "--drain-timeout"), (["--start-after", "-1"], "--start-after"),
])
def test_options_out_of_range_are_refused_before_anything_starts(tmp_path, args, option):
    data = _csv(tmp_path / "h.csv", _interleaved(2, 3))
    # no broker at this address: a refusal that came after the first connection would be exit 1, not 2
    result = _invoke(["--input", str(data), *args], {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{find_free_port()}"})
    assert result.exit_code == 2, result.output
    assert option in result.output and "Invalid value" in result.output, result.output


def test_check_options_accepts_the_defaults_and_the_library_refuses_too():
    assert replay_module.check_options(ReplayOptions()) is None
    assert replay_module.check_options(ReplayOptions(rate=0.5, max_events=1, k=1, start_after=0.8)) is None
    with pytest.raises(ValueError, match="--max-events"):
        replay_module.replay(ReplayOptions(inputs=[Path("unused")], max_events=0), "127.0.0.1:1")


def test_no_broker_fails_in_seconds(tmp_path):
    from kafka.errors import KafkaConnectionError

    data = _csv(tmp_path / "h.csv", _interleaved(2, 3))
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="no Kafka broker answers"):
        replay_module.replay(ReplayOptions(inputs=[data], progress=False), f"127.0.0.1:{find_free_port()}")
    assert time.monotonic() - started < 8


def _report(**overrides) -> dict:
    block = {"HR": 0.0, "NDCG": 0.0, "MRR": 0.0, "n": 40}
    report = {
        "n_events": 50, "n_users": 5, "k": 10, "closed_loop": True, "interrupted": False, "all_events": block, "events_with_list": block,
        "share_with_list": 0.8, "latency_ms": {"n": 0}, "events_sent": 50, "recommendations_received": 50, "missing_recommendations": 0,
        "unanswered_events": 0, "events_never_sent": 0, "refused_events": 0, "refused_reasons": {}, "dead_letters": 0, "dead_letter_reasons": {},
        "undelivered_events": 0, "duplicate_recommendations": 0, "redelivered_recommendations": 0, "seconds": 1.0, "events_per_second": 50.0,
        "topics": {"interactions": "in-x", "recommendations": "out-x", "dlq": "dlq-x"}, "options": {"drain_timeout": 5.0},
    }
    return {**report, **overrides}


def test_exit_status_and_hints_of_a_finished_replay():
    assert cli.replay_problem(_report()) is None
    assert cli.replay_problem(_report(refused_events=3, dead_letters=2, recommendations_received=45)) is None  # all answered: exit 0
    nobody = cli.replay_problem(_report(events_sent=5, recommendations_received=0, missing_recommendations=50, unanswered_events=5, events_never_sent=45))
    assert "50 of 50 events have no answer (5 sent and unanswered, 45 never sent)" in nobody
    assert "no worker answered on out-x: is `difflsrec worker` running on this cluster and reading in-x?" in nobody
    stalled = cli.replay_problem(_report(recommendations_received=40, missing_recommendations=10, unanswered_events=10))
    assert "10 of 50 events have no answer" in stalled and "--drain-timeout 5 s" in stalled
    assert "every event was refused" in cli.replay_problem(_report(events_sent=0, refused_events=50, recommendations_received=0))


def test_summary_counts_refused_and_dead_letters_and_warns_of_a_replayed_state():
    text = cli.replay_summary(_report(refused_events=1, refused_reasons={"timestamp_out_of_range": 1}, dead_letters=2,
                                  dead_letter_reasons={"timestamp_out_of_range": 2}, events_sent=49, recommendations_received=47))
    assert "events sent 49, never sent 0, refused by the worker's rules (not sent) 1 (timestamp_out_of_range 1)" in text
    assert "dead letters 2 (timestamp_out_of_range 2; not scored)" in text
    assert "replayed to this worker before" in text  # 40 events with a list, not one hit
    hit = {"HR": 0.1, "NDCG": 0.05, "MRR": 0.05, "n": 40}
    assert "replayed to this worker before" not in cli.replay_summary(_report(all_events=hit, events_with_list=hit))
    assert "INTERRUPTED" in cli.replay_summary(_report(interrupted=True))


# ---- on the broker, no worker ------------------------------------------------------------------------------------

@pytest.fixture
def no_worker_env(kafka_bootstrap, kafka_topic):
    """Fresh topics that no worker reads."""
    return settings_env(kafka_bootstrap, interactions_topic=kafka_topic(2, "rp-in"), recommendations_topic=kafka_topic(2, "rp-out"), dlq_topic=kafka_topic(1, "rp-dlq"))


@pytest.mark.kafka
def test_no_worker_answering_exits_1_with_a_hint_and_writes_the_report(tmp_path, no_worker_env):
    data = _csv(tmp_path / "h.csv", _interleaved(3, 10))
    out = tmp_path / "r"
    result = _invoke(["--input", str(data), "--drain-timeout", "2", "--out", str(out)], no_worker_env)
    assert result.exit_code == 1, result.output
    rec_topic, in_topic = no_worker_env["DIFFLSREC_RECOMMENDATIONS_TOPIC"], no_worker_env["DIFFLSREC_INTERACTIONS_TOPIC"]
    assert f"no worker answered on {rec_topic}: is `difflsrec worker` running on this cluster and reading {in_topic}?" in result.output
    assert "30 of 30 events have no answer (3 sent and unanswered, 27 never sent)" in result.output
    assert "events sent 3, never sent 27" in result.output
    report = json.loads((out / "replay.json").read_text())  # written all the same
    assert (report["events_sent"], report["events_never_sent"], report["recommendations_received"], report["missing_recommendations"]) == (3, 27, 0, 30)


@pytest.mark.kafka
def test_progress_refreshes_by_time_not_only_every_200_events(tmp_path, no_worker_env, monkeypatch):
    seen: list[int] = []
    original = replay_module._progress

    def spy(bar, session):
        seen.append(session.counts()[0])
        original(bar, session)

    monkeypatch.setattr(replay_module, "_progress", spy)
    data = _csv(tmp_path / "h.csv", _interleaved(15, 1))
    opts = ReplayOptions(inputs=[data], rate=10.0, drain_timeout=0.5, closed_loop=False)
    env = no_worker_env
    report = replay_module.replay(opts, env["KAFKA_BOOTSTRAP_SERVERS"], env["DIFFLSREC_INTERACTIONS_TOPIC"], env["DIFFLSREC_RECOMMENDATIONS_TOPIC"], env["DIFFLSREC_DLQ_TOPIC"])
    assert report["events_sent"] == 15
    # 1.5 s of sending at 10 events/s: refreshed about every 0.5 s while sending, not once at the first event
    assert len({s for s in seen if 0 < s < 15}) >= 2, seen


def _ctrl_c_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a test run in the background ignores SIGINT; a terminal does not


@pytest.mark.kafka
def test_ctrl_c_writes_the_partial_report_and_exits_130(tmp_path, no_worker_env):
    from stream.producer import TopicReader

    data = _csv(tmp_path / "h.csv", _interleaved(200, 1))  # 200 users: nothing waits for an answer
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "replay", "--input", str(data), "--rate", "10", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **no_worker_env}, preexec_fn=_ctrl_c_as_at_a_terminal)
    try:
        with TopicReader(no_worker_env["KAFKA_BOOTSTRAP_SERVERS"], no_worker_env["DIFFLSREC_INTERACTIONS_TOPIC"]) as reader:
            got, deadline = 0, time.monotonic() + 90
            while got < 3 and time.monotonic() < deadline and proc.poll() is None:
                got += len(reader.poll(0.5))
        assert got >= 3, "the replay never started sending"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "INTERRUPTED" in stdout and "interrupted:" in stderr, stdout + stderr
    report = json.loads((out / "replay.json").read_text())
    assert report["interrupted"] is True and report["n_events"] == 200
    assert 3 <= report["events_sent"] < 200 and report["events_never_sent"] == 200 - report["events_sent"]


@pytest.mark.kafka
def test_ctrl_c_after_the_broker_froze_exits_within_seconds(tmp_path, local_kafka):
    """The producer's close waited for its unsent records as long as kafka-python's delivery timeout (120 s)
    when the broker had gone away: Ctrl-C then seemed to do nothing. After an interrupt it waits 5 s."""
    from stream.producer import TopicReader
    from stream.topics import create_topic

    broker = local_kafka()
    broker.start()
    topics = {"interactions_topic": "in", "recommendations_topic": "out", "dlq_topic": "dlq"}
    for name in topics.values():
        create_topic(broker.bootstrap_servers, name, 1)
    env = settings_env(broker.bootstrap_servers, **topics)
    data = _csv(tmp_path / "h.csv", _interleaved(400, 1))
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "replay", "--input", str(data), "--rate", "20", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}, preexec_fn=_ctrl_c_as_at_a_terminal)
    pid = broker.pid()
    try:
        with TopicReader(broker.bootstrap_servers, "in") as reader:
            got, deadline = 0, time.monotonic() + 90
            while got < 3 and time.monotonic() < deadline and proc.poll() is None:
                got += len(reader.poll(0.5))
        assert got >= 3, "the replay never started sending"
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering; the replay keeps producing into its buffer
        time.sleep(2)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=150)
        took = time.monotonic() - interrupted
    finally:
        os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert took < 20, f"exit took {took:.1f} s after Ctrl-C"


# ---- with a real worker -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def strict_worker(kafka_bootstrap, tiny_artifact_dir, tmp_path_factory):
    """A worker whose own rules are stricter than the defaults a replay checks with: events before
    900,000,000 (1998-07) go to its dead-letter topic, although the replay's check lets them through."""
    from tests.stream.worker_harness import Deployment

    deployment = Deployment(kafka_bootstrap, tiny_artifact_dir, tmp_path_factory.mktemp("replay-worker"), partitions=2, min_event_time=900_000_000.0)
    try:
        deployment.start_worker("w1", find_free_port())
        yield deployment
    finally:
        deployment.close()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_dead_letter_answers_its_event_and_a_refused_event_is_not_sent(tmp_path, strict_worker):
    rows = [("u1", "i5", 100)]  # refused here (before 1990): never sent
    rows += [("u1", "i6", 880_000_000)]  # passes the replay's check, dead-lettered by the worker
    rows += _interleaved(2, 8, start=T0)  # u0 and u1, 8 events each: u1's must all go out after the dead letter
    data = _csv(tmp_path / "h.csv", rows)
    out = tmp_path / "r"
    names = ("interactions_topic", "recommendations_topic", "dlq_topic")
    env = settings_env(strict_worker.bootstrap, **{name: strict_worker.settings[name] for name in names})
    result = _invoke(["--input", str(data), "--drain-timeout", "30", "--out", str(out)], env)
    assert result.exit_code == 0, result.output + "\n" + strict_worker.logs()
    report = json.loads((out / "replay.json").read_text())
    # every event of u1 went out after its dead letter, and was answered (the dead letter's stalled them all)
    assert report["recommendations_received"] == 16 and report["missing_recommendations"] == 0, report
    assert report["n_events"] == 18 and report["refused_events"] == 1 and report["refused_reasons"] == {"timestamp_out_of_range": 1}
    assert report["events_sent"] == 17 and report["dead_letters"] == 1 and report["dead_letter_reasons"] == {"timestamp_out_of_range": 1}
    assert report["dead_letter_examples"][0]["index"] == 1
    assert report["events_never_sent"] == 0
    assert report["all_events"]["n"] == 16 and report["latency_ms"]["n"] == 16  # neither the refused nor the dead-lettered event is scored
    assert "dead letters 1 (timestamp_out_of_range 1; not scored)" in result.output
    assert "refused by the worker's rules (not sent) 1 (timestamp_out_of_range 1)" in result.output
