"""Finished runs on disk (``model.run_file``): exact round trip, nothing unpickled, clear errors."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest

from model.benchmark import ModelRun, summarise
from model.evaluation import EvalResult, rank_metrics
from model.run_file import RunFileError, load_run, save_run


def _result(seed: int, n: int = 50) -> EvalResult:
    rng = np.random.default_rng(seed)
    ranks = rng.integers(0, 300, n)
    return EvalResult(rng.permutation(n).astype(np.int64), ranks, rank_metrics(ranks, 10))


def _run(sampled: bool) -> ModelRun:
    history = [{"epoch": 1, "loss": 7.25, "valid": {"HR@10": 0.1, "NDCG@10": 0.05}, "seconds": 3.5}, {"epoch": 2, "loss": None, "note": "é"}]
    config = {"d": 64, "dropout": 0.2, "fusion": "diffusion", "lr": 0.003, "dims": (200, 600), "scale": np.float32(0.5)}
    return ModelRun("difflsrec", 2, _result(0), {"HR@10": 0.12, "NDCG@10": 0.061}, 7, 17, 123.5, [7.0, 7.5], config, history, _result(1) if sampled else None)


@pytest.mark.parametrize("sampled", [True, False])
def test_a_run_reads_back_exactly(tmp_path, sampled):
    run = _run(sampled)
    save_run(run, tmp_path / "r.npz")
    back = load_run(tmp_path / "r.npz")
    for name in ("model", "seed", "valid", "best_epoch", "epochs", "train_seconds", "epoch_seconds", "history"):
        assert getattr(back, name) == getattr(run, name), name
    assert back.config == {**run.config, "dims": [200, 600]}  # JSON: tuples come back as lists, numpy scalars as floats
    pairs = [(back.test, run.test)] + ([(back.test_sampled, run.test_sampled)] if sampled else [])
    assert (back.test_sampled is None) == (not sampled)
    for got, want in pairs:
        np.testing.assert_array_equal(got.users, want.users)
        np.testing.assert_array_equal(got.ranks, want.ranks)
        assert list(got.per_example) == list(want.per_example)  # metric order kept: tables list them in it
        for metric, values in want.per_example.items():
            assert got.per_example[metric].dtype == values.dtype
            np.testing.assert_array_equal(got.per_example[metric], values)
    assert {k: v for k, v in summarise([back]).items() if k != "config"} == {k: v for k, v in summarise([run]).items() if k != "config"}
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]  # no temporary file left


def test_a_pickle_is_refused_without_being_run(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.npz").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(RunFileError, match="not a readable run file"):
        load_run(tmp_path / "evil.npz")
    assert not marker.exists()


def test_unreadable_files_raise_run_file_errors(tmp_path):
    save_run(_run(False), tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a run")
    for name in ("cut.npz", "junk.npz", "missing.npz"):
        with pytest.raises(RunFileError, match=name):
            load_run(tmp_path / name)
    np.savez(tmp_path / "future.npz", meta=np.frombuffer(b'{"format": 99}', dtype=np.uint8))
    with pytest.raises(RunFileError, match="format 99"):
        load_run(tmp_path / "future.npz")


def test_reproduce_retrains_a_run_it_cannot_read(tmp_path, caplog):
    from model.reproduce import _load_run

    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="model.reproduce"):
        assert _load_run(tmp_path / "old.npz") is None  # an older version's pickle beside it is not read
        assert _load_run(tmp_path / "bad.npz") is None
        assert _load_run(tmp_path / "none.npz") is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "older version" in messages[0] and "old.pkl" in messages[0] and "unreadable run" in messages[1]
    assert os.path.exists(tmp_path / "old.pkl")  # left for the user to delete
