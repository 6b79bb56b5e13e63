"""The bootstrap job on real MovieLens data: train, index, publish, gate, warm start, announce, kill."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bootstrap.gate import GateRule
from bootstrap.history import read_files
from bootstrap.job import BootstrapOptions, parse_duration, run_once
from bootstrap.registry import Registry
from index import ItemIndex
from model.artifact import load_artifact
from model.training import TrainConfig
from tests.processes import kill_when

TINY = {"d": 16, "short_len": 4, "n_tokens": 3, "T": 10, "denoiser_hidden": 32}
PUBLISH = GateRule(tolerance=1.0)  # the threshold is 0: any candidate passes
REFUSE = GateRule(tolerance=-100.0, alpha=1.0)  # demands 101x the live score: refused unless the live one scores 0


@pytest.fixture(scope="module")
def small_history(ml100k_file, tmp_path_factory) -> Path:
    """The first 80 users of the real ml-100k file, in its own format."""
    lines = Path(ml100k_file).read_text().splitlines()
    users = sorted({int(line.split("\t")[0]) for line in lines})[:80]
    keep = set(users)
    path = tmp_path_factory.mktemp("hist") / "u.data"
    path.write_text("\n".join(line for line in lines if int(line.split("\t")[0]) in keep) + "\n")
    return path


def _opts(files, **kw) -> BootstrapOptions:
    train = TrainConfig(epochs=kw.pop("epochs", 1), patience=1, progress=False)
    return BootstrapOptions(inputs=[files], overrides=TINY, train=train, announce=False, **kw)


def test_publish_then_gate_and_warm_start(small_history, tmp_path):
    reg = Registry(tmp_path / "registry")
    first = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    assert first.published and reg.latest() == first.version
    art = load_artifact(reg.latest_path())
    index = ItemIndex.load(reg.latest_path() / "index")
    assert len(index) == len(art.item_ids) - 1 == first.metrics["n_items"]
    assert art.manifest["metrics"]["valid_NDCG@10"] == pytest.approx(first.metrics["valid_NDCG@10"])
    # the index holds exactly the model's item embeddings
    ids, scores = index.search(np.ones((1, 16), np.float32), 5)
    table = art.model.item_embeddings().detach().numpy()
    expected = np.sort(table[1:].sum(1))[::-1][:5]
    assert np.allclose(scores[0], expected, atol=1e-4)

    # a second run warm-starts from the live model and is compared with it on the same examples
    second = run_once(_opts(small_history, gate=PUBLISH), reg, cache_dir=tmp_path / "cache")
    assert second.published and second.metrics["warm_started_items"] == second.metrics["n_items"]
    assert "live_NDCG@10" in second.metrics and reg.latest() == second.version
    # a gate that demands a large improvement refuses, and the live version stays
    refused = run_once(_opts(small_history, gate=REFUSE), reg, cache_dir=tmp_path / "cache")
    assert second.metrics["live_NDCG@10"] > 0  # (else no threshold is above the candidate)
    assert not refused.published and "below the threshold" in refused.reason
    assert reg.latest() == second.version and len(reg.versions()) == 2
    # a periodic job keeps the newest versions only (the live one always)
    third = run_once(_opts(small_history, gate=PUBLISH, keep_versions=1), reg, cache_dir=tmp_path / "cache")
    assert third.published and reg.versions() == [third.version]


def test_train_until_keeps_the_early_timeline(small_history, tmp_path):
    from bootstrap.job import load_history

    full = read_files([small_history])
    cut = full.time_quantile(0.5)
    # exactly the interactions before the cut, in the file's order: none at or after it, none earlier dropped
    early = load_history(_opts(small_history, train_until=0.5), None, "")
    expected = [(u, i, t) for u, i, t in zip(full.users, full.items, full.times) if t < cut]
    assert list(zip(early.users, early.items, early.times)) == expected
    assert 0 < len(expected) < len(full) and max(early.times) < cut <= max(full.times)
    assert load_history(_opts(small_history, train_until=float(cut)), None, "").times == early.times  # an absolute time
    reg = Registry(tmp_path / "registry")
    report = run_once(_opts(small_history, train_until=0.5, kcore=2), reg, cache_dir=tmp_path / "cache")
    assert report.metrics["n_interactions"] <= len(expected)


def test_announcement_on_model_updates_topic(small_history, tmp_path, kafka_bootstrap, kafka_topic):
    from kafka import KafkaConsumer

    topic = kafka_topic(1, "model-updates")
    reg = Registry(tmp_path / "registry")
    opts = _opts(small_history)
    opts.announce = True
    report = run_once(opts, reg, bootstrap_servers=kafka_bootstrap, updates_topic=topic, cache_dir=tmp_path / "cache")
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=15000)
    try:
        messages = [json.loads(m.value) for m in consumer]
    finally:
        consumer.close()
    assert [m["version"] for m in messages] == [report.version]
    assert Path(messages[0]["path"]) == reg.latest_path().resolve() and "valid_NDCG@10" in messages[0]["metrics"]


def test_the_announcement_is_sent_while_the_registry_lock_is_held(small_history, tmp_path, monkeypatch):
    """Announced after the lock was released, a slow announcement of this version could reach the workers after a
    later publisher's, and they would swap back to it and stay there. Sent under the lock, the order of the
    announcements is the order the versions went live."""
    import fcntl

    import bootstrap.job

    reg = Registry(tmp_path / "registry")
    held = []

    def announce(bootstrap_servers, topic, version, path, metrics):
        with open(reg.root / ".lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(version)
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)

    monkeypatch.setattr(bootstrap.job, "announce", announce)
    opts = _opts(small_history)
    opts.announce = True
    report = run_once(opts, reg, bootstrap_servers="127.0.0.1:1", cache_dir=tmp_path / "cache")
    assert report.published and held == [report.version]


def test_history_files_keep_sub_second_times_as_the_offline_reader_does(tmp_path):
    """Amazon 2023 times are milliseconds. Bootstrap and replay floored them to whole seconds: same-second events
    fell back to file order (here B at .900 before A at .100) and two events of one item within a second became
    one duplicate. Now the times keep their fraction, and whole seconds stay ints (their CSV is unchanged)."""
    from bootstrap.job import prepare_history

    ms = 1_700_000_000_000
    rows = [("U", "C", ms), ("U", "D", ms + 1000), ("U", "B", ms + 2900), ("U", "A", ms + 2100), ("U", "A", ms + 2500)]
    rows += [(f"V{k}", item, ms + 10_000 + k) for k in range(5) for item in "ABCD"]  # other users, so a 1-core keeps all
    path = tmp_path / "reviews.csv"
    path.write_text("user_id,parent_asin,rating,timestamp\n" + "".join(f"{u},{i},5.0,{t}\n" for u, i, t in rows))
    table = read_files([path])
    mine = [(t, i) for u, i, t in zip(table.users, table.items, table.times) if u == "U"]
    assert mine == [(1_700_000_000, "C"), (1_700_000_001, "D"), (1_700_000_002.9, "B"), (1_700_000_002.1, "A"), (1_700_000_002.5, "A")]
    assert isinstance(mine[0][0], int)
    data = prepare_history(table, kcore=0, cache_dir=tmp_path / "cache")
    seq = data.sequences
    u = int(np.flatnonzero(seq.user_ids == "U")[0])
    assert seq.item_ids[seq.user_items(u)].tolist() == ["C", "D", "A", "A", "B"]  # time order, both A events kept


@pytest.mark.kafka
def test_reading_the_topic_applies_the_workers_limits_and_keeps_sub_second_times(kafka_bootstrap, kafka_topic, monkeypatch):
    """Retraining reads what the worker served: its configured event limits (a 5 KB event under a 16 KB limit
    was dropped by the built-in 4 KB one), and the events' times with their fraction of a second."""
    from kafka import KafkaProducer

    from bootstrap.history import read_topic

    topic = kafka_topic(1, "interactions")
    big = {"user_id": "u1", "item_id": "i1", "timestamp": 1_700_000_000.25, "context": "x" * 5000}  # extra fields are ignored
    small = {"user_id": "u1", "item_id": "i2", "timestamp": 1_700_000_000_750}  # milliseconds
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for event in (big, small):
        producer.send(topic, key=b"u1", value=json.dumps(event).encode()).get(timeout=30)
    producer.close()
    monkeypatch.setenv("DIFFLSREC_MAX_EVENT_BYTES", "16384")
    table = read_topic(kafka_bootstrap, topic)
    assert table.items == ["i1", "i2"] and table.times == [1_700_000_000.25, 1_700_000_000.75]
    monkeypatch.delenv("DIFFLSREC_MAX_EVENT_BYTES")
    assert read_topic(kafka_bootstrap, topic).items == ["i2"]  # the default limit: the big one is oversize


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("15m") == 900 and parse_duration("2h") == 7200 and parse_duration("5") == 5
    with pytest.raises(ValueError):
        parse_duration("soon")
    for never in ("-1h", "0", "0s", "nan"):  # a period of 0 or less retrained back to back, 15 runs in 40 s
        with pytest.raises(ValueError, match="must be positive"):
            parse_duration(never)


def test_bootstrap_killed_while_writing_leaves_the_live_version(small_history, tmp_path):
    """SIGKILL the real `difflsrec bootstrap` process the moment its staging directory appears."""
    root = tmp_path / "registry"
    reg = Registry(root)
    live = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache").version
    env = {**os.environ, "DIFFLSREC_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "difflsrec.cli", "bootstrap", "--input", str(small_history), "--epochs", "1", "--registry", str(root), "--no-announce", "--tolerance", "1"]
    cmd += [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]
    killed_mid_write = False
    for _ in range(5):
        live = reg.latest()  # an attempt that finished before we caught it published a new live version
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if any(p.name.startswith(".staging-") for p in root.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.002)
        proc.wait(60)
        assert reg.latest() is not None and (reg.latest_path() / "manifest.json").is_file()
        for version in reg.versions():  # every visible version is complete and loadable
            load_artifact(reg.path_of(version))
            ItemIndex.load(reg.path_of(version) / "index")
        if killed_mid_write:
            break
    assert killed_mid_write, "never caught the job while it was writing"
    assert reg.latest() == live


def test_bootstrap_reads_amazon_2023_items_by_the_item_key_it_is_given(ml100k_file, tmp_path):
    """--item-key asin: the model's vocabulary is the variants' asin, not their parent_asin."""
    from model.data.formats import ReadOptions

    rows = [line.split("\t") for line in Path(ml100k_file).read_text().splitlines()]
    keep = set(sorted({int(r[0]) for r in rows})[:60])
    path = tmp_path / "Movies.jsonl.gz"
    with gzip.open(path, "wt") as f:
        for u, i, r, t in rows:
            if int(u) in keep:
                review = {"rating": float(r), "title": "", "text": "", "asin": f"V{i}", "parent_asin": f"P{i}", "user_id": f"U{u}", "timestamp": int(t) * 1000}
                f.write(json.dumps(review) + "\n")
    opts = _opts(path, read=ReadOptions(item_key="asin"))
    report = run_once(opts, Registry(tmp_path / "registry"), cache_dir=tmp_path / "cache")
    assert report.published, report.reason
    items = load_artifact(Path(report.path)).item_ids[1:]
    assert items and all(item.startswith("V") for item in items)


def test_bootstrap_killed_while_training_goes_on_from_its_last_epoch(small_history, tmp_path):
    """SIGKILL the real `difflsrec bootstrap` after its first epochs; the same command again resumes (no
    epoch 1) and publishes the model an uninterrupted job publishes."""
    env = {**os.environ, "DIFFLSREC_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}

    def cmd(root: Path) -> list[str]:
        args = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "bootstrap", "--input", str(small_history), "--epochs", "5",
                "--patience", "50", "--registry", str(root), "--no-announce"]  # fmt: skip
        return args + [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]

    whole = subprocess.run(cmd(tmp_path / "whole"), env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    root = tmp_path / "killed"
    proc = subprocess.Popen(cmd(root), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: bool(list((root / ".training").glob("*.pt"))))
    assert Registry(root).latest() is None  # it died before publishing
    again = subprocess.run(cmd(root), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "difflsrec: resuming after epoch" in again.stdout and "difflsrec epoch   1  loss" not in again.stdout
    published = [load_artifact(Registry(r).latest_path()).manifest["metrics"] for r in (tmp_path / "whole", root)]
    assert published[0]["valid_NDCG@10"] == published[1]["valid_NDCG@10"] and published[0]["epochs"] == published[1]["epochs"] == 5
    assert not list((root / ".training").iterdir())  # published: the checkpoint is gone


def test_obsolete_or_foreign_training_checkpoints_never_stop_a_retraining(small_history, tmp_path, caplog):
    import logging

    from bootstrap.job import training_checkpoint

    caplog.set_level(logging.INFO, logger="bootstrap.job")

    reg = Registry(tmp_path / "registry")
    first = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    ours = training_checkpoint(reg, first.metrics["data_hash"], first.version)  # the next run's path
    ours.write_bytes(b"left by a crashed disk, or by another version of this code")
    obsolete = ours.with_name("0123456789abcdef01234567-cold.pt")
    obsolete.write_bytes(b"another history's retraining")
    second = run_once(_opts(small_history, gate=PUBLISH), reg, cache_dir=tmp_path / "cache")
    assert second.published and not ours.exists() and not obsolete.exists()
    assert f"removing an obsolete training checkpoint {obsolete}" in caplog.text
    assert f"discarding the training checkpoint {ours}: cannot read" in caplog.text  # then trained from scratch


# ---- what an operator met (review of 2026-12-06) -------------------------------------------------------
def test_a_broken_live_version_does_not_block_the_run_that_replaces_it(small_history, tmp_path):
    reg = Registry(tmp_path / "registry")
    first = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    weights = reg.latest_path() / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated copy, a full disk
    second = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    assert second.published and reg.latest() == second.version != first.version
    assert first.version in second.metrics["live_unreadable"] and "warm_started_items" not in second.metrics
    assert "no live version to compare with" in second.line()
    load_artifact(reg.latest_path())


def test_a_new_embedding_size_is_trained_without_the_live_rows(small_history, tmp_path):
    reg = Registry(tmp_path / "registry")
    run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    opts = _opts(small_history, gate=PUBLISH)
    opts.overrides = {**TINY, "d": 8}  # the live model has d = 16: its item rows do not fit (a RuntimeError before)
    report = run_once(opts, reg, cache_dir=tmp_path / "cache")
    assert report.published and report.metrics["warm_started_items"] == 0
    assert load_artifact(reg.latest_path()).model.config.d == 8


def test_a_failed_announcement_after_publishing_is_a_warning_not_a_failed_run(small_history, tmp_path):
    reg = Registry(tmp_path / "registry")
    opts = _opts(small_history)
    opts.announce = True
    started = time.monotonic()
    report = run_once(opts, reg, bootstrap_servers="127.0.0.1:1", cache_dir=tmp_path / "cache")
    assert report.published and reg.latest() == report.version
    assert "KafkaConnectionError" in report.metrics["announce_error"] and "workers find the version by polling LATEST" in report.line()
    assert time.monotonic() - started < 120


def test_the_gate_compares_with_the_version_published_while_this_one_trained(small_history, tmp_path, monkeypatch, caplog):
    """Two jobs on one registry: the second to publish is gated against the first's version, not against the
    one that was live when it started (both published before, the older one gating the newer's successor)."""
    import logging
    import shutil

    import bootstrap.job as job

    reg = Registry(tmp_path / "registry")
    first = run_once(_opts(small_history), reg, cache_dir=tmp_path / "cache")
    real_train = job.train_discarding_foreign

    def copy_of_first(staging: Path) -> None:
        shutil.copytree(reg.path_of(first.version), staging, dirs_exist_ok=True)
        manifest = json.loads((staging / "manifest.json").read_text())
        (staging / "manifest.json").write_text(json.dumps({**manifest, "version": "20990101T000000-000001"}))

    def train_while_another_job_publishes(*args, **kwargs):
        result = real_train(*args, **kwargs)
        reg.publish("20990101T000000-000001", copy_of_first)
        return result

    monkeypatch.setattr(job, "train_discarding_foreign", train_while_another_job_publishes)
    caplog.set_level(logging.INFO, logger="bootstrap.job")
    second = run_once(_opts(small_history, gate=PUBLISH), reg, cache_dir=tmp_path / "cache")
    assert second.published and second.metrics["live_version"] == "20990101T000000-000001"
    assert "the live version changed while training" in caplog.text
    # named after the version it replaced (the clock reads 2026), so pruning by name keeps it as the newest
    assert second.version == "20990101T000000-000002" and reg.versions()[-1] == second.version
    assert reg.prune(1) == [first.version, "20990101T000000-000001"] and reg.versions() == [second.version]


def test_a_first_run_is_gated_against_a_version_published_while_it_trained(small_history, tmp_path, monkeypatch):
    """No live version when training started (the candidate's validation scores are not computed then), one
    when it ends: the gate still compares the two on the same users."""
    import shutil

    import bootstrap.job as job

    elsewhere = Registry(tmp_path / "elsewhere")
    other = run_once(_opts(small_history), elsewhere, cache_dir=tmp_path / "cache")
    reg = Registry(tmp_path / "registry")
    real_train = job.train_discarding_foreign

    def train_while_another_job_publishes(*args, **kwargs):
        result = real_train(*args, **kwargs)
        reg.publish(other.version, lambda staging: shutil.copytree(elsewhere.path_of(other.version), staging, dirs_exist_ok=True))
        return result

    monkeypatch.setattr(job, "train_discarding_foreign", train_while_another_job_publishes)
    refused = run_once(_opts(small_history, gate=REFUSE), reg, cache_dir=tmp_path / "cache")
    assert not refused.published and refused.metrics["live_version"] == other.version and reg.latest() == other.version
    assert refused.metrics["gate_examples"] == 80 and refused.metrics["live_NDCG@10"] > 0
    assert f"(live version {other.version})" in refused.reason


def test_a_single_run_the_gate_refuses_exits_3_and_one_that_publishes_exits_0(small_history, tmp_path):
    """A refused run exited 0 like a published one: a scheduler running it once could not tell."""
    root = tmp_path / "registry"
    live = run_once(_opts(small_history), Registry(root), cache_dir=tmp_path / "cache").version
    env = {**os.environ, "DIFFLSREC_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "difflsrec.cli", "--threads", "1", "bootstrap", "--input", str(small_history), "--epochs", "1", "--registry", str(root), "--no-announce"]
    cmd += [arg for k, v in TINY.items() for arg in ("--set", f"{k}={v}")]
    refused = subprocess.run([*cmd, "--tolerance", "-100", "--alpha", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 3 and "not published" in refused.stdout, refused.stdout + refused.stderr
    assert Registry(root).latest() == live
    published = subprocess.run([*cmd, "--tolerance", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert published.returncode == 0 and "published" in published.stdout and Registry(root).latest() != live, published.stdout + published.stderr
