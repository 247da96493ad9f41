#!/usr/bin/env bash
# End-to-end test of the container cluster (docker-compose.yml, project hc-test):
#   0. images from cargo xtask compose images (offline; cached), `--profile prometheus up -d`,
#      health via the balancer
#   1. baseline bounded load + staleness checker through 127.0.0.1:${HC_LB_PORT:-8080};
#      then the profile's real Prometheus (127.0.0.1:${HC_PROM_PORT:-19090}): its 3 node
#      targets are up, a p99 query on the HTTP latency histogram returns a sample, the alert
#      rules of deploy/prometheus/alerts.yml are loaded
#   2. `docker kill` n2 under load: time until n1 and n3 report it dead in
#      /v1/cluster/stats, time until the balancer stops routing to it; restart, alive again
#   3. `docker network disconnect` n3 under load: its /health turns 503 isolated
#      (read with `docker exec ... hc-http`), the balancer drains it; reconnect:
#      /health 200 "ok", routed again, a value changed meanwhile is not stale on n3
#   4. stop + start redis under load: nodes degrade, recover, stay coherent
# Prints requests, errors, stale reads and detection times; fails on any stale
# read or failed step. Tears down exactly its own project (`down -v`), also on failure.
#   HC_COMPOSE_KEEP=1 keeps the cluster running afterwards (for debugging).
#   PHASE_SECONDS (default 20): load duration per chaos phase.
#   HC_GRACE_MS (default 500: the coherence bound under full load on 2 cores; older values read within it after the ack are "lagged", later ones stale; 0 = strict).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PROJECT=hc-test
export HC_LB_PORT=${HC_LB_PORT:-8080}
export HC_LB_STATS_PORT=${HC_LB_STATS_PORT:-18404}
export HC_PROM_PORT=${HC_PROM_PORT:-19090}
PROM=http://127.0.0.1:$HC_PROM_PORT
LB=http://127.0.0.1:$HC_LB_PORT
STATS=http://127.0.0.1:$HC_LB_STATS_PORT
PHASE=${PHASE_SECONDS:-20}
LC="python3 $ROOT/xtask/py/loadcheck.py"
declare -A NODE_URL=([n1]=http://127.0.0.1:18081 [n2]=http://127.0.0.1:18082 [n3]=http://127.0.0.1:18083)

log() { echo "[compose-test] $*" >&2; }
# shellcheck source=compose-lib.sh
source "$ROOT/xtask/sh/compose-lib.sh"
# The `prometheus` profile is always on, so `down` also removes its container.
dc() { compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" --profile prometheus "$@"; }

FAILED=()
fail_step() { log "FAILED: $*"; FAILED+=("$*"); }
RESULTS=()
result() { RESULTS+=("$*"); log "$*"; }

# --------------------------------------------------------------- preflight
docker info >/dev/null 2>&1 || { echo "compose-test: no Docker engine" >&2; exit 1; }
for p in "$HC_LB_PORT" "$HC_LB_STATS_PORT" "$HC_PROM_PORT" 18081 18082 18083; do
  # SO_REUSEADDR: connections in TIME_WAIT do not count, a listener does.
  if python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $p)); s.listen()" 2>/dev/null; then :; else
    echo "compose-test: 127.0.0.1:$p is in use (a local cluster-up.sh cluster? stop it first)" >&2
    exit 1
  fi
done

log "building images (cargo xtask compose images)"
eval "$("$ROOT/xtask/sh/docker-images.sh" | tail -n1)"
export REDIS_IMAGE NODE_IMAGE HAPROXY_IMAGE PROMETHEUS_IMAGE
log "REDIS_IMAGE=$REDIS_IMAGE NODE_IMAGE=$NODE_IMAGE HAPROXY_IMAGE=$HAPROXY_IMAGE PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE"

LOAD_PID=""
TMP=$(mktemp -d)
teardown() {
  local rc=$?
  if [ -n "$LOAD_PID" ] && kill -0 "$LOAD_PID" 2>/dev/null; then kill "$LOAD_PID" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ] || [ ${#FAILED[@]} -gt 0 ]; then
    log "logs (tail) of $PROJECT:"
    dc logs --no-color --tail=40 >&2 2>&1 || true
  fi
  if [ "${HC_COMPOSE_KEEP:-0}" = 1 ]; then
    log "HC_COMPOSE_KEEP=1: leaving project $PROJECT running (docker-compose -p $PROJECT down -v)"
  else
    log "tearing down project $PROJECT"
    dc down -v --remove-orphans >&2 2>&1 || true
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

cid() { dc ps -q "$1"; }
# node_health NODE: "<status-code> <body>" read inside the container (works while
# the container is cut off from every network).
node_health() {
  local out code
  out=$(docker exec "$(cid "$1")" hc-http /health 2>"$TMP/h.err") || true
  code=$(sed -n 's/^status: //p' "$TMP/h.err")
  echo "${code:-none} $out"
}
# wait_node_health NODE CODE [TIMEOUT]: prints seconds waited
now_ms() { date +%s%3N; }
wait_node_health() {
  local node=$1 want=$2 timeout_ms=$((${3:-30} * 1000)) start
  start=$(now_ms)
  until [ "$(node_health "$node" | cut -d' ' -f1)" = "$want" ]; do
    if [ $(($(now_ms) - start)) -gt "$timeout_ms" ]; then echo timeout; return 1; fi
    sleep 0.1
  done
  python3 -c "print(f'{($(now_ms) - $start) / 1000:.3f}')"
}
start_load() { # LABEL SECONDS
  $LC load --url "$LB" --duration "$2" --max-requests 200000 --grace-ms "${HC_GRACE_MS:-500}" --label "$1" --run "$1$RANDOM" \
    >"$TMP/$1.json" &
  LOAD_PID=$!
}
finish_load() { # LABEL
  local rc=0
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  local s
  s=$(tail -n1 "$TMP/$1.json" 2>/dev/null || echo '{}')
  python3 - "$1" "$s" <<'EOF' | tee -a "$TMP/summary"
import json, sys
s = json.loads(sys.argv[2] or "{}")
print(f"{sys.argv[1]}: requests={s.get('requests')} errors={s.get('errors')} "
      f"stale_reads={s.get('stale_reads')} hits={s.get('hits')} misses={s.get('misses')} "
      f"rps={s.get('rps')} error_kinds={s.get('error_kinds')}")
EOF
  case $rc in
    0) ;;
    1) fail_step "$1: STALE READS" ;;
    *) fail_step "$1: load checker exit $rc" ;;
  esac
}

# ------------------------------------------------------------------ 0. up
log "docker compose --profile prometheus up -d (project $PROJECT)"
dc up -d >&2
t=$($LC wait-health --url "$LB" --timeout 120) || { fail_step "balancer /health never 200"; exit 1; }
for n in n1 n2 n3; do
  $LC wait-health --url "${NODE_URL[$n]}" --timeout 60 >/dev/null || fail_step "$n /health not 200"
done
for n in n2 n3; do
  $LC wait-state --url "${NODE_URL[n1]}" --target "$n" --state alive --timeout 60 >/dev/null \
    || fail_step "n1 does not see $n alive"
done
[ ${#FAILED[@]} -eq 0 ] || exit 1
result "cluster healthy through the balancer after ${t}s"

# ------------------------------------------------------------ 1. baseline
start_load baseline 10
finish_load baseline

# ------------------------------------------- 1b. Prometheus (compose profile)
# The metric names are those of src/node_metrics.rs; the baseline load just fed the
# histogram, and a scrape every 5 s gives rate() its two samples within the minute.
P99='histogram_quantile(0.99, sum by (le) (rate(hc_http_request_duration_seconds_bucket[1m])))'
if $LC prom-check --url "$PROM" --targets 3 --query "$P99" --rule HybridCachePeerDead \
  --timeout 90 >"$TMP/prom" 2>"$TMP/prom.err"; then
  while read -r line; do result "prometheus: $line"; done <"$TMP/prom"
else
  cat "$TMP/prom" "$TMP/prom.err" >&2
  fail_step "prometheus profile: targets not all up or no histogram data"
fi

# ------------------------------------------------------- 2. kill a node
start_load kill "$PHASE"
sleep 2
log "docker kill n2"
docker kill "$(cid n2)" >/dev/null
$LC wait-state --url "${NODE_URL[n1]}" --target n2 --state dead --timeout 30 >"$TMP/d1" &
p1=$!
$LC wait-state --url "${NODE_URL[n3]}" --target n2 --state dead --timeout 30 >"$TMP/d3" &
p3=$!
lb=$($LC lb-state --stats "$STATS" --server n2 --want down --timeout 30) || fail_step "balancer kept routing to killed n2"
wait "$p1" || fail_step "n1 never reported n2 dead"
wait "$p3" || fail_step "n3 never reported n2 dead"
result "kill n2: dead on n1 after $(cat "$TMP/d1")s, on n3 after $(cat "$TMP/d3")s; balancer drained it after ${lb}s"
sleep 2
log "docker start n2"
dc start n2 >&2
$LC wait-health --url "${NODE_URL[n2]}" --timeout 60 >/dev/null || fail_step "restarted n2 not healthy"
al=$($LC wait-state --url "${NODE_URL[n1]}" --target n2 --state alive --timeout 60) || fail_step "n2 not alive again on n1"
lbup=$($LC lb-state --stats "$STATS" --server n2 --want up --timeout 30) || fail_step "balancer does not route to n2 again"
result "restart n2: alive on n1 after ${al}s, routed again after ${lbup}s"
finish_load kill

# ------------------------------------------------- 3. partition a node
NET=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" \
  --filter "label=com.docker.compose.network=hcnet")
[ -n "$NET" ] || NET=${PROJECT}_hcnet
KEY="partition-$RANDOM"
curl -s -o /dev/null -X PUT --data-binary v1 "${NODE_URL[n3]}/v1/cache/general/$KEY"
curl -s -o /dev/null "${NODE_URL[n3]}/v1/cache/general/$KEY"   # now in n3's L1
start_load partition "$PHASE"
sleep 2
log "docker network disconnect n3"
docker network disconnect "$NET" "$(cid n3)"
iso=$(wait_node_health n3 503 30) || fail_step "n3 never reported isolated (503)"
result "partition n3: /health 503 after ${iso}s: $(node_health n3 | cut -d' ' -f2-)"
lbd=$($LC lb-state --stats "$STATS" --server n3 --want down --timeout 30) || fail_step "balancer kept routing to isolated n3"
result "partition n3: balancer drained it after ${lbd}s"
dead3=$($LC wait-state --url "${NODE_URL[n1]}" --target n3 --state suspect,dead --timeout 30) \
  || fail_step "n1 never suspected partitioned n3"
result "partition n3: n1 reports it suspect/dead after ${dead3}s"
# A write n3 cannot hear about while cut off.
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary v2 "${NODE_URL[n1]}/v1/cache/general/$KEY")
[ "$code" = 204 ] || fail_step "PUT via n1 during partition answered $code"
sleep 2
log "docker network connect n3"
docker network connect --alias n3 "$NET" "$(cid n3)"
ok=$(wait_node_health n3 200 30) || fail_step "n3 not healthy after reconnect"
result "reconnect n3: /health 200 after ${ok}s: $(node_health n3 | cut -d' ' -f2-)"
lbu=$($LC lb-state --stats "$STATS" --server n3 --want up --timeout 30) || fail_step "balancer does not route to n3 again"
al3=$($LC wait-state --url "${NODE_URL[n1]}" --target n3 --state alive --timeout 30) || fail_step "n3 not alive again on n1"
result "reconnect n3: routed again after ${lbu}s, alive on n1 after ${al3}s"
got=$(curl -s -w ' %{http_code}' "${NODE_URL[n3]}/v1/cache/general/$KEY")
case $got in
  "v2 200"|*" 404") result "reconnect n3: key written during the partition reads '$got' on n3 (coherent)" ;;
  *) fail_step "STALE on n3 after reconnect: '$got' (expected v2 or a miss)" ;;
esac
finish_load partition

# ------------------------------------------------ 4. redis stop / start
KEY2="redis-$RANDOM"
curl -s -o /dev/null -X PUT --data-binary v1 "${NODE_URL[n1]}/v1/cache/general/$KEY2"
curl -s -o /dev/null "${NODE_URL[n2]}/v1/cache/general/$KEY2"   # in n2's L1
start_load redis "$PHASE"
sleep 2
log "docker compose stop redis"
dc stop -t 1 redis >&2
sleep 1
result "redis down: n1 /health: $(curl -s -m 2 "${NODE_URL[n1]}/health" | head -c 200)"
sleep 3
log "docker compose start redis"
dc start redis >&2
for n in n1 n2 n3; do
  end=$(($(date +%s) + 30))
  until curl -s -m 2 "${NODE_URL[$n]}/health" | grep -q '"status":"ok"'; do
    [ "$(date +%s)" -lt "$end" ] || { fail_step "$n not back to status ok after redis restart"; break; }
    sleep 0.2
  done
done
result "redis restarted: nodes report ok"
# Changes acknowledged while Redis was down (and the category-wide invalidations a coherence
# gap during the outage stands for) are replayed into L2 now; a write made before a node's
# replay ends may be removed by it (a miss, never an old value). Wait for hc_l2_backlog 0.
for n in n1 n2 n3; do
  end=$(($(date +%s) + 30))
  until curl -s -m 2 "${NODE_URL[$n]}/metrics" | grep -qx 'hc_l2_backlog 0'; do
    [ "$(date +%s)" -lt "$end" ] || { fail_step "$n still has changes to replay 30 s after redis restart"; break; }
    sleep 0.2
  done
done
result "redis restarted: every node replayed its backlog"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary v3 "${NODE_URL[n1]}/v1/cache/general/$KEY2")
[ "$code" = 204 ] || fail_step "PUT via n1 after redis restart answered $code"
sleep 0.5
got=$(curl -s -w ' %{http_code}' "${NODE_URL[n2]}/v1/cache/general/$KEY2")
case $got in
  "v3 200") result "after redis restart: n2 reads the new value" ;;
  *) fail_step "STALE on n2 after redis restart: '$got' (expected v3)" ;;
esac
finish_load redis

# -------------------------------------------------------------- summary
echo "== compose-test summary"
cat "$TMP/summary"
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAIL (${#FAILED[@]}):"
  for f in "${FAILED[@]}"; do echo "  - $f"; done
  exit 1
fi
echo "PASS: no stale reads"
