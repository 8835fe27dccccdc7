#!/usr/bin/env bash
# Every GPU check in one prepared run, for a session that is lent a GPU (under 10 minutes):
#
#     device run:  bash benchmarks/gpu_session.sh        (timeout_s 590; results come back from $OUT)
#
# The device image already holds what deepsee needs (torch, torchvision, numba, safetensors, pandas, pillow,
# matplotlib, tqdm, pytest), so nothing is installed: the checkout's own package is used through PYTHONPATH.
# Each step has its own time limit and writes its own file, so a slow step costs only itself:
#   gpu.txt                 the GPU and driver
#   test_cuda.txt           tests/test_cuda.py: GPU == CPU, bf16, a training step, the CPU memory count vs CUDA's
#   train_32x_b2_cuda.json  32x, batch 2, checkpointing, bf16 autocast: seconds, CUDA max allocated, live tensors
#   cuda-bf16.json          the benchmark matrix's CUDA column (bf16), part by part
#   cuda-fp32.json          generator and components in fp32
# Copy the JSON files into benchmarks/results/ afterwards; nbs/14_performance.ipynb renders every file there.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"

# time limits add up to 560 s, inside one 600 s call
timeout 100 "$PY" -m pytest -q -s tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.txt"

timeout 90 "$PY" benchmarks/train_step.py --presets celebamaskhq_32x:2 --grad-checkpointing --device cuda --tensor-peak \
    --no-flops --warmup 1 --iters 2 --json > "$OUT/train_32x_b2_cuda.json"

bf16() { timeout "$1" "$PY" benchmarks/matrix.py --out "$OUT/cuda-bf16.json" --device cuda --dtype bf16 --update --parts "$2"; }
bf16 90 generator; bf16 40 components; bf16 60 explore; bf16 80 train_step; bf16 60 train_step_ckpt   # one write per part
timeout 40 "$PY" benchmarks/matrix.py --out "$OUT/cuda-fp32.json" --device cuda --dtype fp32 --update --parts generator components
ls -l "$OUT"
