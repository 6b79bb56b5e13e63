"""The CUDA path: every model trains and evaluates on the GPU, and the GPU computes what the CPU computes
(offline scoring, artifacts, and the streaming engine with its scripted/traced graphs).

Skipped where torch sees no CUDA device (this project's CI machine); run on a GPU machine with
``pytest tests/test_cuda.py``. The faiss-GPU index has its own tests in tests/index.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from difflsrec.settings import resolve_device
from model.artifact import load_artifact, save_artifact
from model.batching import FeatureView, eval_batches
from model.evaluation import evaluate
from model.registry import available, build
from model.training import TrainConfig, train
from stream.engine import Engine, ModelBundle
from tests.model.toy import toy_dataset, toy_stats
from tests.stream.helpers import TINY, as_sourced, make_events

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# small versions of every registered model (the registry's defaults are the paper's sizes)
SMALL = {
    "difflsrec": TINY,
    "difflsrec-gate": TINY,
    "difflsrec-no-both": TINY,
    "difflsrec-no-snr": TINY,
    "difflsrec-no-token": TINY,
    "sasrec": {"d": 16, "n_heads": 2, "max_len": 16},
    "gru4rec": {"d": 16},
    "fossil": {"d": 16, "L": 3},
    "hgn": {"d": 16, "L": 4},
    "marank": {"d": 16, "L": 4},
    "diffrec": {"dims": (24,), "steps": 5},
    "pop": {},
}


def _data():
    data = toy_dataset(n_users=24, n_items=30, min_len=5, max_len=14, seed=0, pattern=True)
    return data, toy_stats(data)


def test_auto_device_is_cuda():
    assert resolve_device("auto") == torch.device("cuda")


def test_every_registered_model_is_covered():
    assert sorted(SMALL) == available()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_trains_on_cuda_and_scores_as_on_cpu(name):
    """Two epochs through the shared trainer on the GPU (fit_statistics, batches, validation), then the
    trained weights score every validation history on the GPU as they do on the CPU."""
    data, stats = _data()
    torch.manual_seed(0)
    model = build(name, data.sequences.n_items, stats, SMALL[name])
    result = train(model, data, stats, TrainConfig(epochs=2, progress=False, device="cuda", seed=0))
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(np.isfinite(row["loss"]) for row in result.history if "loss" in row)

    features = FeatureView.build(data, stats)
    cpu_model = copy.deepcopy(model).cpu().eval()
    model.eval()
    with torch.inference_mode():
        for batch, _, _ in eval_batches(data, features, data.split.valid, 64, model.max_len):
            on_gpu = model.score(batch.to("cuda")).cpu()
            on_cpu = cpu_model.score(batch)
            finite = torch.isfinite(on_cpu)
            assert torch.equal(finite, torch.isfinite(on_gpu))
            torch.testing.assert_close(on_gpu[finite], on_cpu[finite], rtol=1e-4, atol=1e-4)
    gpu_metrics = evaluate(model, data, features, data.split.valid, device="cuda").mean()
    cpu_metrics = evaluate(cpu_model, data, features, data.split.valid, device="cpu").mean()
    assert gpu_metrics == pytest.approx(cpu_metrics, abs=1e-6)


def test_artifact_trained_on_cuda_loads_on_cpu_and_back(tmp_path):
    data, stats = _data()
    torch.manual_seed(0)
    model = build("difflsrec", data.sequences.n_items, stats, TINY)
    train(model, data, stats, TrainConfig(epochs=1, progress=False, device="cuda", seed=0))
    save_artifact(tmp_path, model.eval(), stats, data.sequences.item_ids, data_hash=data.hash, split="loo")
    on_cpu, on_gpu = load_artifact(tmp_path, "cpu"), load_artifact(tmp_path, "cuda")
    assert next(on_gpu.model.parameters()).device.type == "cuda"
    for (k, a), (_, b) in zip(on_cpu.model.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(a, b.cpu(), rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("fuse_every_event", [True, False], ids=["every-event", "per-user"])
def test_engine_on_cuda_serves_what_the_cpu_engine_serves(tiny_artifact_dir, fuse_every_event):
    """The worker's engine with the model on the GPU (stepper under TorchScript, traced fusion, both
    checked against eager at load; FAISS on the host): same lists, same scores, same user states."""
    gpu, cpu = ModelBundle.load(tiny_artifact_dir, device="cuda"), ModelBundle.load(tiny_artifact_dir, device="cpu")
    assert gpu.device.type == "cuda"
    events = as_sourced(make_events(n_users=6, per_user=9, seed=4))
    outputs = []
    for bundle in (gpu, cpu):
        engine, states, recs = Engine(bundle, top_n=5, fuse_every_event=fuse_every_event), {}, []
        for at in range(0, len(events), 7):  # micro-batches of 7: users' events split across batches
            result = engine.process(events[at : at + 7], states)
            states.update(result.states)
            recs += result.recommendations
        outputs.append((recs, states))
    (gpu_recs, gpu_states), (cpu_recs, cpu_states) = outputs
    assert len(gpu_recs) == len(cpu_recs) == len(events)
    for g, c in zip(gpu_recs, cpu_recs):
        assert [i["item_id"] for i in g["items"]] == [i["item_id"] for i in c["items"]]
        np.testing.assert_allclose([i["score"] for i in g["items"]], [i["score"] for i in c["items"]], rtol=1e-4, atol=1e-5)
    assert gpu_states.keys() == cpu_states.keys()
    for user in cpu_states:
        np.testing.assert_allclose(gpu_states[user].h, cpu_states[user].h, rtol=1e-4, atol=1e-5)
        assert gpu_states[user].history == cpu_states[user].history


def test_a_run_resumed_on_cuda_ends_as_the_uninterrupted_one_and_moves_to_the_cpu(tmp_path):
    """model/checkpoint.py on the GPU: the CUDA random states travel too (within float tolerance: some CUDA
    backward kernels are not bit-deterministic), and a GPU run's checkpoint continues on the CPU."""
    data, stats = _data()

    def run(cfg: TrainConfig, checkpoint=None):
        torch.manual_seed(0)
        model = build("difflsrec", data.sequences.n_items, stats, TINY)
        return model, train(model, data, stats, cfg, checkpoint=checkpoint)

    cfg = TrainConfig(epochs=3, patience=50, progress=False, device="cuda", seed=0)
    whole_model, whole = run(cfg)
    ckpt = tmp_path / "ckpt.pt"
    run(TrainConfig(epochs=2, patience=50, progress=False, device="cuda", seed=0), ckpt)
    resumed_model, resumed = run(cfg, ckpt)
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for a, b in zip(resumed.history, whole.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    for (k, a), (_, b) in zip(resumed_model.state_dict().items(), whole_model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    on_cpu_model, on_cpu = run(TrainConfig(epochs=4, patience=50, progress=False, device="cpu", seed=0), ckpt)
    assert on_cpu.epochs_run == 4 and next(on_cpu_model.parameters()).device.type == "cpu"
