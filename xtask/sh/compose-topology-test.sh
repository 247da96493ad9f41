#!/usr/bin/env bash
# Container test of the Redis topologies (docker-compose.yml profiles `sentinel` and
# `redis-cluster`, project hc-topo): up with the profile, the three nodes pointed at it,
# health through the balancer; bounded load + staleness check (xtask/py/loadcheck.py) while
# the primary container is `docker kill`ed (Sentinel: redis-s1; Cluster: the primary of the
# bus slot {hc}); prints the time from the kill to the first acknowledged write through the
# balancer; fails on a stale read or when writes do not resume within 60 s.
# Tears down exactly its own project (`down -v`), also on failure.
#   cargo xtask compose topology sentinel|redis-cluster
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PROFILE=${1:-}
case "$PROFILE" in sentinel|redis-cluster) ;; *) echo "usage: $0 sentinel|redis-cluster" >&2; exit 2 ;; esac
PROJECT=hc-topo
export HC_LB_PORT=${HC_LB_PORT:-8080}
export HC_LB_STATS_PORT=${HC_LB_STATS_PORT:-18404}
LB=http://127.0.0.1:$HC_LB_PORT
LC="python3 $ROOT/xtask/py/loadcheck.py"
log() { echo "[compose-topology-test] $*" >&2; }
# shellcheck source=compose-lib.sh
source "$ROOT/xtask/sh/compose-lib.sh"
dc() { compose -p "$PROJECT" -f "$ROOT/docker-compose.yml" --profile "$PROFILE" "$@"; }

docker info >/dev/null 2>&1 || { echo "compose-topology-test: no Docker engine" >&2; exit 1; }
eval "$("$ROOT/xtask/sh/docker-images.sh" | tail -n1)"
export REDIS_IMAGE NODE_IMAGE HAPROXY_IMAGE
export HC_REDIS_HOST=""
if [ "$PROFILE" = sentinel ]; then
  export HC_REDIS_SENTINELS=sentinel1:26390,sentinel2:26390,sentinel3:26390 HC_REDIS_SENTINEL_MASTER=hcmaster
else
  export HC_REDIS_CLUSTER_NODES=rc1:6390,rc2:6390,rc3:6390
fi

TMP=$(mktemp -d)
LOAD_PID=""
teardown() {
  local rc=$?
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ "$rc" -ne 0 ] && { dc logs --no-color --tail=30 >&2 2>&1 || true; }
  dc down -v >/dev/null 2>&1 || true
  rm -rf "$TMP"
  exit "$rc"
}
trap teardown EXIT

dc up -d >&2
$LC wait-health --url "$LB" --timeout 120 >/dev/null || { log "balancer /health never 200"; exit 1; }
log "healthy through the balancer ($PROFILE)"

# The container to kill.
if [ "$PROFILE" = sentinel ]; then
  victim=redis-s1
else
  cid=$(dc ps -q rc1)
  for _ in $(seq 1 100); do
    docker exec "$cid" redis-cli -p 6390 CLUSTER INFO | grep -q cluster_state:ok && break
    sleep 0.2
  done
  slot=$(docker exec "$cid" redis-cli -p 6390 CLUSTER KEYSLOT '{hc}')
  # CLUSTER NODES: id ip:port@bus flags master ... slot ranges from field 9 on.
  ip=$(docker exec "$cid" redis-cli -p 6390 CLUSTER NODES | awk -v s="$slot" '
    $3 ~ /master/ { for (i = 9; i <= NF; i++) { n = split($i, r, "-"); if (n == 1) r[2] = r[1];
      if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) { split($2, a, ":"); print a[1]; exit } } }')
  victim=""
  for svc in rc1 rc2 rc3 rc4 rc5 rc6; do
    c=$(dc ps -q "$svc")
    [ "$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")" = "$ip" ] && victim=$svc
  done
  [ -n "$victim" ] || { log "no container owns {hc} ($ip)"; exit 1; }
fi

$LC load --url "$LB" --duration 30 --max-requests 20000 --category roles --run topo \
  --label "$PROFILE" --grace-ms "${HC_GRACE_MS:-500}" >"$TMP/load.out" 2>&1 &
LOAD_PID=$!
sleep 3
log "docker kill $victim"
start=$(date +%s%N)
docker kill "$(dc ps -q "$victim")" >/dev/null
resumed=""
for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data v --max-time 2 \
    "$LB/v1/cache/roles/topology-probe" || true)
  if [ "$code" = 204 ]; then resumed=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
  sleep 0.1
done
rc=0
wait "$LOAD_PID" || rc=$?
LOAD_PID=""
tail -n 3 "$TMP/load.out" >&2
[ -n "$resumed" ] || { log "writes did not resume within 60 s"; exit 1; }
log "$PROFILE: first acknowledged write through the balancer ${resumed} ms after docker kill $victim"
case $rc in
  0|3) ;;  # 3: error rate (the 503s of the failover window) is not a failure here
  *) log "load checker exit $rc (stale reads?)"; exit 1 ;;
esac
log "PASS"
