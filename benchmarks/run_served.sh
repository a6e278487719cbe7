#!/usr/bin/env bash
# Start the benchmark service (benchmarks/serve_bench.yaml), run rerank-bench against it with the
# in-process ceiling and the naive baseline in the same run, then stop the service by its pid.
#   benchmarks/run_served.sh [extra rerank-bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
VENV="${VENV:-.venv}"
MODEL=models/bench-minilm-l6-cross-encoder
[ -f "$MODEL/config.json" ] || "$VENV/bin/rerank-bench-model" "$MODEL"
OUT="${OUT:-runs/bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
"$VENV/bin/serve" run benchmarks/serve_bench.yaml >"$OUT/serve.log" 2>&1 &
SERVE_PID=$!
trap 'kill -TERM $SERVE_PID 2>/dev/null; wait $SERVE_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf http://127.0.0.1:8011/health >/dev/null && break
  kill -0 $SERVE_PID 2>/dev/null || { cat "$OUT/serve.log"; exit 1; }
  sleep 1
done
"$VENV/bin/rerank-bench" --url http://127.0.0.1:8011 --model-dir "$MODEL" --threads 2 \
  --ceiling --naive --output-dir "$OUT" "$@"
