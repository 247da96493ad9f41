#!/usr/bin/env bash
# Chaos run against the local cluster (cargo xtask cluster up; started here and
# stopped again if it is not running): bounded load through the balancer
# (127.0.0.1:${HC_LB_PORT:-8080}) with a staleness checker, while
#   1. one node is SIGKILLed  -> time until a survivor reports it dead,
#   2. it is restarted        -> time until it is alive again,
#   3. Redis is SIGKILLed and restarted (nodes degrade, then recover).
# Prints requests, errors, stale reads and timings; exits non-zero on any stale
# read (or when a step fails).
#   CHAOS_DURATION (s, default 45)  CHAOS_MAX_REQUESTS (default 200000)
#   CHAOS_GRACE_MS (default 500: the coherence bound under full load on 2 cores; reads of an older value within it count as "lagged", later ones as stale; 0 = strict)
#   CHAOS_VICTIM (default n2)       CHAOS_DETECT_TIMEOUT (s, default 30)
set -euo pipefail
# shellcheck source=cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

DURATION=${CHAOS_DURATION:-45}
MAX_REQ=${CHAOS_MAX_REQUESTS:-200000}
VICTIM=${CHAOS_VICTIM:-n2}
DETECT_TIMEOUT=${CHAOS_DETECT_TIMEOUT:-30}
LB=http://127.0.0.1:$LB_PORT
LC="python3 $ROOT/xtask/py/loadcheck.py"
mkdir -p "$STATE"

started_here=0
LOAD_PID=""
cleanup() {
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then kill "$LOAD_PID" 2>/dev/null || true; fi
  if [ "$started_here" = 1 ]; then "$ROOT/xtask/sh/cluster-down.sh" || true; fi
}
trap cleanup EXIT

if ! curl -s -o /dev/null -m 2 "$LB/health"; then
  log "cluster not running: starting it"
  started_here=1
  "$ROOT/xtask/sh/cluster-up.sh"
fi
is_running "$VICTIM" hybrid-cache || die "$VICTIM is not a node this script's cluster started (no live pid in $STATE)"
is_running redis redis-server || die "redis (pid in $STATE/redis.pid) is not running"
OBSERVER=$(cluster_nodes | awk -v v="$VICTIM" '$1 != v { print $1; exit }')
OBS_URL=http://$(node_http "$OBSERVER")
VIC_URL=http://$(node_http "$VICTIM")

log "load: ${DURATION}s / ${MAX_REQ} requests max through $LB"
$LC load --url "$LB" --duration "$DURATION" --max-requests "$MAX_REQ" --label chaos --grace-ms "${CHAOS_GRACE_MS:-500}" \
  >"$STATE/chaos-summary.json" &
LOAD_PID=$!
step_failed=""
sleep 3

log "SIGKILL $VICTIM"
stop_proc "$VICTIM" hybrid-cache KILL
detect=$($LC wait-state --url "$OBS_URL" --target "$VICTIM" --state dead --timeout "$DETECT_TIMEOUT") \
  || step_failed+=" detect-dead"
log "$OBSERVER reports $VICTIM dead after ${detect}s"
sleep 1

log "restart $VICTIM"
start_node "$VICTIM"
wait_http "$VIC_URL/health" 30 || step_failed+=" restart-health"
rejoin=$($LC wait-state --url "$OBS_URL" --target "$VICTIM" --state alive --timeout "$DETECT_TIMEOUT") \
  || step_failed+=" rejoin"
log "$OBSERVER reports $VICTIM alive after ${rejoin}s"
sleep 2

log "SIGKILL redis"
stop_proc redis redis-server KILL
sleep 1
degraded=$(curl -s -m 2 "$OBS_URL/health" || true)
log "$OBSERVER /health without redis: $degraded"
sleep 2
log "restart redis"
start_redis
sleep 3
healthy_again=$($LC wait-health --url "$OBS_URL" --timeout 30) || step_failed+=" redis-recovery"

log "waiting for the load to finish"
load_rc=0
wait "$LOAD_PID" || load_rc=$?
LOAD_PID=""

summary=$(tail -n1 "$STATE/chaos-summary.json")
echo "== chaos summary"
python3 - "$summary" <<EOF
import json, sys
s = json.loads(sys.argv[1])
print(f"requests={s['requests']} errors={s['errors']} stale_reads={s['stale_reads']} "
      f"hits={s['hits']} misses={s['misses']} rps={s['rps']}")
print("error kinds:", s["error_kinds"])
EOF
echo "detect_dead_s=${detect:-?} rejoin_alive_s=${rejoin:-?} health_after_redis_restart_s=${healthy_again:-?}"
[ -z "$step_failed" ] || { echo "FAILED steps:$step_failed"; exit 1; }
case $load_rc in
  0) echo "PASS: no stale reads" ;;
  1) echo "FAIL: stale reads"; exit 1 ;;
  *) echo "FAIL: load checker exit $load_rc"; exit 1 ;;
esac
