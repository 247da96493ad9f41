#!/usr/bin/env bash
# Release benchmarks against a private redis-server on a free loopback port (never 6379),
# stopped by pid at the end:
#
#   scripts/bench-coherence.sh [samples=10000] [max-seconds=120]   invalidation propagation
#   scripts/bench-strict.sh [samples-per-rep=1000] [reps=5] [blackhole]
#                                                                   strict vs bounded writes
#                                      (blackhole: one of the 3 nodes' Redis link cut)
#
# bench-strict.sh is a link to this script; the name picks the example.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(basename "$0")" in
  bench-strict.sh) EXAMPLE=bench_strict; A1="${1:-1000}"; A2="${2:-5}"; A3="${3:-}"; MAX_SECS=600 ;;
  *) EXAMPLE=bench_coherence; A1="${1:-10000}"; A2="${2:-120}"; MAX_SECS="$A2" ;;
esac
REDIS_SERVER="${HC_TEST_REDIS_SERVER:-redis-server}"

command -v "$REDIS_SERVER" >/dev/null || { echo "redis-server not found" >&2; exit 2; }

cargo build --release --example "$EXAMPLE"

free_port() {
  python3 - <<'PY'
import socket
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    if p != 6379:
        print(p)
        break
PY
}

DIR="$(mktemp -d -t hc-bench-redis-XXXXXX)"
REDIS_PID=""
cleanup() {
  if [[ -n "$REDIS_PID" ]]; then
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

PORT=""
for _ in 1 2 3 4 5; do
  PORT="$(free_port)"
  "$REDIS_SERVER" --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$DIR" >"$DIR/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.05
  done
  if kill -0 "$REDIS_PID" 2>/dev/null; then break; fi
  REDIS_PID=""
done
[[ -n "$REDIS_PID" ]] || { echo "could not start redis-server" >&2; cat "$DIR/redis.log" >&2; exit 1; }
echo "redis-server pid $REDIS_PID on 127.0.0.1:$PORT"

# The run itself is bounded by MAX_SECS (checked between samples); the outer timeout is a
# safety net.
timeout "$((MAX_SECS + 60))" "${CARGO_TARGET_DIR:-target}/release/examples/$EXAMPLE" \
  "redis://127.0.0.1:$PORT/0" "$A1" "$A2" ${A3:-}
