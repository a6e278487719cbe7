#!/usr/bin/env bash
# GPU check of the served cross-encoder (lab/rerank_tools/gpu_check.py): builds the benchmark model offline,
# deploys it on a local Ray with num_gpus: 1, checks the replica runs on CUDA, and prints pairs/s
# through HTTP at several batch sizes and for 100-document requests (p99), next to in-process
# CrossEncoder.predict in fp32, fp16 and bf16 and the backend at several batch_cost_tokens. About 5 minutes;
# stopped after 8 (SIGINT first, so Serve and Ray are shut down through their API).
#
#   scripts/gpu_check.sh                       # on a machine with an NVIDIA GPU
#   scripts/gpu_check.sh --allow-cpu --quick   # smoke test of the script on CPU (near-free model)
#   scripts/gpu_check.sh --help
#
# Exit status: 0 passed, 1 no GPU visible, 2 a check failed, 124 ran out of time.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    PY="$(command -v python3)"
fi

# Local throwaway cluster on loopback: Ray's token auth (on by default for local Ray 2.60) is off,
# nothing is downloaded.
export RAY_AUTH_MODE=disabled
export RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1
# The service and the lab tools (lab/) from this clone, also where they are not installed (a copy of
# the repository run with a system python3).
export PYTHONPATH="$PWD/lab:$PWD${PYTHONPATH:+:$PYTHONPATH}"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        | sed 's/^/[gpu-check] nvidia-smi: /'
else
    echo "[gpu-check] nvidia-smi not found"
fi

exec timeout --signal=INT --kill-after=30 480 "$PY" -m rerank_tools.gpu_check "$@"
