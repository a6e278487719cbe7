# The two commands a newcomer needs: `make run` (set up, then serve the embedded default on
# 127.0.0.1:8000) and `make test` (set up, then run the whole suite). Both are idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on a machine without a GPU. On a GPU machine: make setup TORCH_SPEC=torch
# (or install the CUDA torch of your choice into the venv first: pip keeps it).
TORCH_SPEC ?= torch==2.13.0
# Local Ray starts with token auth on since Ray 2.60; the local default turns it off (see README).
export RAY_AUTH_MODE ?= disabled
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup run test lint bench-model gpu-check cluster-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: setup
	$(VENV)/bin/serve run serve_config.yaml

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -p no:cacheprovider -rs $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

bench-model: setup
	$(VENV)/bin/rerank-bench-model models/bench-minilm-l6-cross-encoder

gpu-check: setup
	scripts/gpu_check.sh

# A head and a worker node on 127.0.0.1 (ray start), serve deploy over REST, a worker lost under load,
# a worker rejoining, user_config and a rolling model update; stops what it started by pid.
cluster-demo: setup
	$(PY) -m rerank_tools.cluster_demo
