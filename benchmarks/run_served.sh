#!/usr/bin/env bash
# Start the benchmark service (benchmarks/serve_bench.yaml), run rerank-bench against it with the
# in-process ceiling and the naive baseline in the same run, then stop the service by its pid.
#   benchmarks/run_served.sh [extra rerank-bench flags]
#   RUNTIME=openvino-bf16 benchmarks/run_served.sh ...   # the model served in another runtime
# RUNTIME is a label of `rerank-bench --runtimes` (torch-bf16, openvino, openvino-int8, ...): the
# service's model takes that runtime's settings, and the run adds the in-process throughput of the
# same runtime next to torch's. The naive baseline stays torch fp32.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
VENV="${VENV:-.venv}"
MODEL=models/bench-minilm-l6-cross-encoder
[ -f "$MODEL/config.json" ] || "$VENV/bin/rerank-bench-model" "$MODEL"
OUT="${OUT:-runs/bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
CONFIG=benchmarks/serve_bench.yaml
RUNTIME_FLAGS=()
if [ -n "${RUNTIME:-}" ]; then
  CONFIG="$OUT/serve_bench-$RUNTIME.yaml"
  "$VENV/bin/python" - "$RUNTIME" "$CONFIG" <<'EOF'
import sys

import yaml

from rerank_tools.benchmark.runtimes import RUNTIME_LABELS

label, out = sys.argv[1:]
if label not in RUNTIME_LABELS:
    sys.exit(f"RUNTIME={label}: not one of {', '.join(RUNTIME_LABELS)}")
with open("benchmarks/serve_bench.yaml") as f:
    config = yaml.safe_load(f)
config["applications"][0]["args"]["service"]["backends"]["bench"].update(RUNTIME_LABELS[label].config())
with open(out, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
EOF
  RUNTIME_FLAGS=(--runtimes "$RUNTIME")
fi
"$VENV/bin/serve" run "$CONFIG" >"$OUT/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null || true' EXIT
# A runtime other than torch exports the model on its first start (cached beside the model).
for _ in $(seq 1 400); do
  curl -sf http://127.0.0.1:8011/health >/dev/null && break
  kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 1
done
"$VENV/bin/rerank-bench" --url http://127.0.0.1:8011 --model-dir "$MODEL" --threads 2 \
  --ceiling --naive "${RUNTIME_FLAGS[@]}" --output-dir "$OUT" "$@"
