#!/usr/bin/env bash
# Install the peer, Infinity (PyPI infinity-emb), into a venv of its own (.bench-venvs/infinity,
# git-ignored), so that its pins (sentence-transformers < 4, numpy < 2, transformers <= 5.0) never
# touch the service's venv. Idempotent: a venv that already imports Infinity is kept.
#   benchmarks/setup_infinity.sh                 # CPU torch, as the benchmark sitting uses
#   TORCH_SPEC=torch benchmarks/setup_infinity.sh  # on a GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
INFINITY_VENV="${INFINITY_VENV:-.bench-venvs/infinity}"
INFINITY_VERSION="${INFINITY_VERSION:-0.0.78}"
# The torch the Makefile pins (its TORCH_SPEC); the CPU build wherever pip finds one for it.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PY="$INFINITY_VENV/bin/python"

if [ -x "$INFINITY_VENV/bin/infinity_emb" ] && "$PY" -c "import infinity_emb" 2>/dev/null; then
  echo "$INFINITY_VENV: infinity-emb $("$PY" -c 'import importlib.metadata as m; print(m.version("infinity-emb"))') already installed"
  exit 0
fi
test -x "$PY" || python3 -m venv "$INFINITY_VENV"
"$PY" -m pip install -q --upgrade pip
# torch first, then everything else under a constraint that keeps that torch: without it pip
# backtracks through torch releases and lands on a CUDA build of several GiB.
"$PY" -m pip install -q "$TORCH_SPEC"
CONSTRAINTS="$INFINITY_VENV/constraints.txt"
"$PY" -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' >"$CONSTRAINTS"
# server + torch is all the torch engine and the HTTP server need; `all` adds vision/audio/ct2/optimum,
# whose torchvision is a CUDA-linked build that breaks Infinity's import on a CPU torch.
"$PY" -m pip install -q -c "$CONSTRAINTS" "infinity-emb[server,torch]==$INFINITY_VERSION"
# Should anything have pulled torchvision anyway (an `all` install, a later pip install), remove it:
# Infinity imports it when present, and a build that does not match this torch fails that import.
if "$PY" -m pip show -q torchvision 2>/dev/null; then
  "$PY" -m pip uninstall -q -y torchvision
fi
"$PY" -c "import infinity_emb, torch; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__)"
