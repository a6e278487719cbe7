#!/usr/bin/env bash
# Start the benchmark service (benchmarks/serve_bench.yaml), run rerank-bench against it with the
# in-process ceiling and the naive baseline in the same run, then stop the service by its pid.
#   benchmarks/run_served.sh [extra rerank-bench flags]
#   RUNTIME=openvino-bf16 benchmarks/run_served.sh ...   # the model served in another runtime
# RUNTIME is a label of `rerank-bench --runtimes` (torch-bf16, openvino, openvino-int8, ...): the
# service's model takes that runtime's settings, and the run adds the in-process throughput of the
# same runtime next to torch's. The naive baseline stays torch fp32.
# Other knobs (all optional):
#   CONFIG=benchmarks/serve_fast.yaml   another service configuration (backend `bench`, port 8011)
#   MODEL=models/bench-near-free-cross-encoder   another model directory for backend `bench`
#   INGRESS=haproxy|direct|proxy   Ray Serve's ingress: haproxy (the default, as the service ships:
#     HAProxy + throughput-optimized), direct (throughput-optimized, direct ingress, no HAProxy), or
#     proxy (Ray's classic Python proxy, both switches off)
#   SERVICE_ONLY=1   measure the service alone: no ceiling, no naive server in the same run
#   ROUTER_REPLICAS=2   the Router's replicas (router.num_replicas) in the served configuration
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
VENV="${VENV:-.venv}"
BENCH_MODEL=models/bench-minilm-l6-cross-encoder
MODEL="${MODEL:-$BENCH_MODEL}"
[ -f "$BENCH_MODEL/config.json" ] || "$VENV/bin/rerank-bench-model" "$BENCH_MODEL"
[ -f "$MODEL/config.json" ] || { echo "MODEL=$MODEL: no model there (make bench-model)" >&2; exit 1; }
OUT="${OUT:-runs/bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
BASE_CONFIG="${CONFIG:-benchmarks/serve_bench.yaml}"
CONFIG="$BASE_CONFIG"
RUNTIME_FLAGS=()
[ -n "${RUNTIME:-}" ] && RUNTIME_FLAGS=(--runtimes "$RUNTIME")
if [ -n "${RUNTIME:-}" ] || [ "$MODEL" != "$BENCH_MODEL" ] || [ -n "${ROUTER_REPLICAS:-}" ]; then
  CONFIG="$OUT/$(basename "$BASE_CONFIG" .yaml)-served.yaml"
  "$VENV/bin/python" - "$BASE_CONFIG" "$CONFIG" "${RUNTIME:-}" "$MODEL" "${ROUTER_REPLICAS:-}" <<'PYEOF'
import sys

import yaml

from rerank_tools.benchmark.runtimes import RUNTIME_LABELS

base, out, label, model, replicas = sys.argv[1:]
with open(base) as f:
    config = yaml.safe_load(f)
service = config["applications"][0]["args"]["service"]
backend = service["backends"]["bench"]
backend["model"] = model
if replicas:
    service.setdefault("router", {})["num_replicas"] = int(replicas)
if label:
    if label not in RUNTIME_LABELS:
        sys.exit(f"RUNTIME={label}: not one of {', '.join(RUNTIME_LABELS)}")
    backend.update(RUNTIME_LABELS[label].config())
with open(out, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
PYEOF
fi

# Ray Serve's ingress switches, read by every Ray process `serve run` starts; HAProxy's files and
# ports are this run's own, so it never meets another Ray on the same machine.
INGRESS="${INGRESS:-haproxy}"
# (A short directory: HAProxy refuses an admin socket path past 97 characters.)
HAPROXY_DIR="$(mktemp -d /tmp/rrhp-XXXXXXXX)"
INGRESS_ENV="$("$VENV/bin/python" -m rerank_tools.ingress_env "$INGRESS" "$HAPROXY_DIR")"
eval "$INGRESS_ENV"
echo "$INGRESS_ENV" >"$OUT/ingress.env"

# Never measure someone else's server: the port must be free before this one starts.
if curl -s -o /dev/null http://127.0.0.1:8011/; then
  echo "run_served: something already answers on 127.0.0.1:8011; stop it first" >&2
  exit 1
fi
"$VENV/bin/serve" run "$CONFIG" >"$OUT/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null || true; rm -rf "$HAPROXY_DIR"' EXIT
# A runtime other than torch exports the model on its first start (cached beside the model).
for _ in $(seq 1 400); do
  curl -sf http://127.0.0.1:8011/health >/dev/null && break
  kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 1
done
PEERS=(--ceiling --naive)
[ -n "${SERVICE_ONLY:-}" ] && PEERS=()
"$VENV/bin/rerank-bench" --url http://127.0.0.1:8011 --model-dir "$MODEL" --threads 2 \
  "${PEERS[@]}" "${RUNTIME_FLAGS[@]}" --output-dir "$OUT" "$@"
