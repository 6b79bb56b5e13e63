#!/usr/bin/env bash
# The CUDA path on a GPU machine, in one go (a few minutes):
#
#   bash benchmarks/gpu_check.sh ARTIFACT_DIR [OUT_DIR]
#
# ARTIFACT_DIR: a trained ML-1M DiffLSRec artifact (`difflsrec train --input ml-1m/ratings.dat --out DIR`);
# ML-1M itself in ~/.cache/difflsrec/data/ml-1m (`difflsrec data fetch ml-1m`). Runs the CUDA tests
# (tests/test_cuda.py) and the faiss index tests (their GPU cases run where faiss has GPU support), then
# times the model's serving steps and a training epoch on the GPU against the CPU of the same machine.
# Everything it prints is also written to OUT_DIR/gpu_check.log.
set -uo pipefail
artifact=${1:?usage: gpu_check.sh ARTIFACT_DIR [OUT_DIR]}
out=${2:-gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() { echo; echo "== $* ($(date -u +%H:%M:%S))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$py" - <<'EOF'
import faiss, torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0)}, "
      f"faiss {faiss.__version__} sees {faiss.get_num_gpus()} GPU(s)")
EOF

step "CUDA tests and index tests"
"$py" -m pytest -q -p no:cacheprovider -o addopts="" -ra tests/test_cuda.py tests/index/test_item_index.py

step "fusion + scoring, 256 users, by inference steps (GPU, then CPU with 1 thread)"
"$py" benchmarks/bench_fusion.py --artifact "$artifact" --device cuda --threads 1 --steps 1,2,4,8,16
"$py" benchmarks/bench_fusion.py --artifact "$artifact" --device cpu --threads 1 --steps 1,2,4,8,16

step "the worker's serving steps per event (model on GPU, then CPU; FAISS on the host)"
"$py" benchmarks/bench_engine.py --artifact "$artifact" --device cuda --events 20000 --batches 256,20 --repeat 3
"$py" benchmarks/bench_engine.py --artifact "$artifact" --device cpu --events 20000 --batches 256,20 --repeat 3

step "one ML-1M training epoch, extrapolated from 60 batches (GPU)"
"$py" benchmarks/bench_epoch.py --device cuda --threads 1 --batches 60 --models difflsrec,sasrec,gru4rec,hgn,diffrec
step "done"
