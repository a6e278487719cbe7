#!/usr/bin/env bash
# One benchmark sitting: every server alone, one after another, on the same TREC DL20 traffic and the
# same cells, on the benchmark model (MiniLM-L6's compute) and on the near-free model (1 layer, hidden
# 32: the serving path's cost only). For each model:
#   peers    rerank-bench: the in-process predict ceiling, the naive FastAPI server, then Infinity with
#            bfloat16 and with float32 weights (each started, checked, swept and stopped in turn)
#   service  benchmarks/run_served.sh, once per entry of SERVICES (CONFIG x INGRESS), the service alone
# Every target's scores are first compared with in-process predict (CHECK_SCORES requests). Results:
# $OUT/<model>/<run>/results.jsonl, $OUT/sitting.json, and the table printed at the end
# (python -m rerank_tools.benchmark.sitting $OUT prints it again). docs/benchmark-method.md: the method.
#   benchmarks/run_sitting.sh                          # the full sitting (20 s a cell)
#   DURATION=3 benchmarks/run_sitting.sh               # a rehearsal of the whole harness
# Knobs (all optional):
#   DURATION=20                 seconds a cell (after WARMUP unmeasured requests)
#   CELLS=10x1,10x32,100x8      documents x concurrency
#   MODELS="bench near-free"
#   SERVICES="bench-haproxy fast-haproxy bench-proxy fast-proxy bench-direct"
#       <config>-<ingress>: config bench (serve_bench.yaml, torch fp32) or fast (serve_fast.yaml,
#       openvino bf16); ingress haproxy (as shipped), proxy (Ray's Python proxy) or direct
#       (throughput-optimized without HAProxy). SERVICES= (empty) measures no service.
#   PEERS=1                     0: no ceiling, naive server or Infinity
#   INFINITY_DTYPES=bfloat16,float32
#   CHECK_SCORES=4  THREADS=<cores>  OUT=runs/sitting-<timestamp>  RERANK_SHARED_DATA=../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}" HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
VENV="${VENV:-.venv}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
CELLS="${CELLS:-10x1,10x32,100x8}"
MODELS="${MODELS:-bench near-free}"
SERVICES="${SERVICES-bench-haproxy fast-haproxy bench-proxy fast-proxy bench-direct}"
PEERS="${PEERS:-1}"
INFINITY_DTYPES="${INFINITY_DTYPES:-bfloat16,float32}"
CHECK_SCORES="${CHECK_SCORES:-4}"
THREADS="${THREADS:-$(nproc)}"
DATA_DIR="${RERANK_SHARED_DATA:-../shared/data}"
CANDIDATES="$DATA_DIR/trec-dl20/candidates.jsonl"
OUT="${OUT:-runs/sitting-$(date +%Y%m%d-%H%M%S)}"

if [ ! -f "$CANDIDATES" ]; then
  echo "run_sitting: SKIPPED, nothing measured: no TREC DL20 traffic at $CANDIDATES" \
    "(set RERANK_SHARED_DATA to the folder holding trec-dl20/)" >&2
  exit 0
fi
model_dir() {
  case "$1" in
    bench) echo models/bench-minilm-l6-cross-encoder ;;
    near-free) echo models/bench-near-free-cross-encoder ;;
    *) echo "run_sitting: unknown model $1 (bench, near-free)" >&2; exit 1 ;;
  esac
}
for model in $MODELS; do
  dir="$(model_dir "$model")"
  if [ ! -f "$dir/config.json" ]; then
    flag=(); [ "$model" = near-free ] && flag=(--near-free)
    "$VENV/bin/rerank-bench-model" "${flag[@]}" "$dir"
  fi
done
[ "$PEERS" = 1 ] && benchmarks/setup_infinity.sh
mkdir -p "$OUT"
# The ceiling per document count at two batch sizes, 10 s each: 32 suits MiniLM-L6's compute, 128 the
# near-free model, whose per-call overhead a larger batch spreads.
COMMON=(--cells "$CELLS" --duration "$DURATION" --warmup "$WARMUP" --check-scores "$CHECK_SCORES"
  --threads "$THREADS" --candidates "$CANDIDATES" --max-total-s 3600)
started=$SECONDS
for model in $MODELS; do
  dir="$(model_dir "$model")"
  if [ "$PEERS" = 1 ]; then
    echo "== $model: ceiling, naive, Infinity ($INFINITY_DTYPES)" >&2
    "$VENV/bin/rerank-bench" "${COMMON[@]}" --model-dir "$dir" --ceiling --naive \
      --ceiling-batch-sizes 32,128 --ceiling-max-s 10 --infinity "$INFINITY_DTYPES" \
      --output-dir "$OUT/$model/peers" >"$OUT/$model-peers.log"
  fi
  for service in $SERVICES; do
    config="${service%-*}" ingress="${service##*-}"
    case "$config" in bench | fast) ;; *) echo "run_sitting: SERVICES entry $service: config bench or fast" >&2; exit 1 ;; esac
    echo "== $model: service $config ($ingress)" >&2
    CONFIG="benchmarks/serve_$config.yaml" MODEL="$dir" INGRESS="$ingress" SERVICE_ONLY=1 \
      OUT="$OUT/$model/service-$service" benchmarks/run_served.sh "${COMMON[@]}" \
      --label "service-$service" >"$OUT/$model-service-$service.log"
  done
done
echo "== sitting done in $((SECONDS - started)) s" >&2
"$VENV/bin/python" -m rerank_tools.benchmark.sitting "$OUT" | tee "$OUT/table.md"
