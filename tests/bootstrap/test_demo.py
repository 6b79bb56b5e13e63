"""`difflsrec demo` end to end with small settings: broker, ml-100k, bootstrap, worker, replay, shutdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_runs_end_to_end(isolated_home, tmp_path):
    out = tmp_path / "report"
    cmd = [
        sys.executable, "-m", "difflsrec.cli", "demo", "--epochs", "1", "--max-events", "1500", "--out", str(out),
        "--set", "d=16", "--set", "T=10", "--set", "denoiser_hidden=32",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "prequential HR@10", "latency event -> recommendation", "demo finished"):
        assert step in proc.stdout, proc.stdout
    report = json.loads((out / "replay.json").read_text())
    assert report["n_events"] == 1500 and report["missing_recommendations"] == 0
    assert report["recommendations_received"] == 1500
    assert report["latency_ms"]["n"] == 1500 and report["closed_loop"]
    # closed loop: every event but each user's first is scored against the list of the user's previous event
    assert report["share_with_list"] == pytest.approx(1 - report["n_users"] / report["n_events"])
    assert (out / "metrics_over_time.png").is_file() and (out / "latency_hist.png").is_file()
    # everything was shut down: no broker or worker of the demo is left running
    leftovers = subprocess.run(["pgrep", "-f", "difflsrec-demo-"], capture_output=True, text=True).stdout.split()
    assert not leftovers, leftovers


def test_demo_options_are_checked_before_kafka_starts():
    from bootstrap.demo import DemoOptions

    for fraction in (0.0, 1.0, 1.5):  # 1.0 was read as "before epoch second 1" and failed after Kafka started
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            DemoOptions(train_fraction=fraction)
    with pytest.raises(ValueError, match="rate > 0"):
        DemoOptions(rate=0)
    DemoOptions(train_fraction=0.5, rate=20, max_events=10)
