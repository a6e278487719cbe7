#!/usr/bin/env bash
# The tenants' figures (docs/tenants.md), in one sitting: each measurement starts the service with
# benchmarks/run_served.sh and stops it by its pid. Results: runs/tenants-<time>/<name>/results.jsonl.
#   benchmarks/run_tenants.sh [DURATION_S]
#   ONLY="flood storm" benchmarks/run_tenants.sh   # some of the measurements below
# 1 flood:   interactive (10 documents, 1 client) alone, bulk (100 documents, 16 clients) alone, both
#            at once, on serve_tenants.yaml
# 2 storm:   a key over its quota (60 a minute) resending at once from 64 clients, beside an
#            interactive tenant (10 documents, 4 clients), each alone and at once
# 3 shared:  2 Router replicas counting in a redis-server (started here, stopped by its pid): the
#            over-quota key for 60 s
# 4 cost:    the near-free model at 100 documents x 8 clients, serve_fast.yaml (no tenants) and
#            serve_tenants.yaml (a tenant whose quotas are counted on every request)
set -euo pipefail
cd "$(dirname "$0")/.."
D="${1:-25}"
OUT="runs/tenants-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
export BENCH_KEY_INTERACTIVE="bench-interactive-$RANDOM$RANDOM" BENCH_KEY_BULK="bench-bulk-$RANDOM$RANDOM"
export BENCH_KEY_LIMITED="bench-limited-$RANDOM$RANDOM"
INTERACTIVE="interactive:docs=10,clients=1,key_env=BENCH_KEY_INTERACTIVE,class=interactive"
BULK="bulk:docs=100,clients=16,key_env=BENCH_KEY_BULK,class=bulk"
served() { # name, then run_served.sh's rerank-bench flags
  local name="$1"; shift
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $name "* ]] || return 0
  OUT="$OUT/$name" SERVICE_ONLY=1 benchmarks/run_served.sh "$@" >"$OUT/$name.log" 2>&1
  echo "$name: $OUT/$name/results.jsonl"
}
CONFIG=benchmarks/serve_tenants.yaml served flood --duration "$D" --mix-alone --mix "$INTERACTIVE" --mix "$BULK"
CONFIG=benchmarks/serve_tenants.yaml served storm --duration "$D" --mix-alone \
  --mix "interactive:docs=10,clients=4,key_env=BENCH_KEY_INTERACTIVE" \
  --mix "limited:docs=10,clients=64,key_env=BENCH_KEY_LIMITED,resend=now"
REDIS_PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill -TERM $REDIS_PID 2>/dev/null || true' EXIT
RERANK_QUOTA_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" ROUTER_REPLICAS=2 \
  CONFIG=benchmarks/serve_tenants.yaml served shared --duration 60 \
  --mix "limited:docs=10,clients=8,key_env=BENCH_KEY_LIMITED,resend=now"
MODEL=models/bench-near-free-cross-encoder CONFIG=benchmarks/serve_fast.yaml served cost-off \
  --duration "$D" --mix "all:docs=100,clients=8"
MODEL=models/bench-near-free-cross-encoder CONFIG=benchmarks/serve_tenants.yaml served cost-on \
  --duration "$D" --mix "all:docs=100,clients=8,key_env=BENCH_KEY_INTERACTIVE"
echo "$OUT"
