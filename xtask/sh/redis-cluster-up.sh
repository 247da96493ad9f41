#!/usr/bin/env bash
# Local Redis Cluster for development: 3 primaries + 3 replicas on loopback (ports
# ${HC_RCLUSTER_BASE:-17000}..+5, never 6379), created with `redis-cli --cluster create`.
# State, logs and pid files in .redis-cluster/. Prints the environment a node needs.
#   cargo xtask redis cluster-up          start
#   cargo xtask redis cluster-down        stop exactly the pids it started (and forget the cluster)
#   cargo xtask redis cluster-failover    kill the primary of the hash tag {${HC_NAMESPACE:-hc}}
#                                           (the bus slot) and print how long until a replica has it
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${HC_RCLUSTER_STATE:-$ROOT/.redis-cluster}
BASE=${HC_RCLUSTER_BASE:-17000}
NS=${HC_NAMESPACE:-hc}
log() { echo "[redis-cluster-up] $*" >&2; }

down() {
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" && log "stopped $(basename "$f" .pid) ($pid)"; fi
    rm -f "$f"
  done
  rm -rf "$STATE"/node*/nodes.conf
}

# The primary port owning the slot of key $1, asked on a live node.
owner() {
  local key=$1 port slot
  for i in 0 1 2 3 4 5; do
    port=$((BASE + i))
    slot=$(redis-cli -p "$port" CLUSTER KEYSLOT "$key" 2>/dev/null) || continue
    redis-cli -p "$port" --raw CLUSTER SLOTS 2>/dev/null | python3 -c '
import sys
slot = int(sys.argv[1]); lines = sys.stdin.read().split()
# --raw flattens: start end ip port id [ip port id]... ; scan for ranges containing slot.
i = 0
while i + 3 < len(lines):
    try:
        s, e = int(lines[i]), int(lines[i + 1])
    except ValueError:
        i += 1; continue
    if s <= slot <= e and lines[i + 2].count(".") == 3:
        print(lines[i + 3]); break
    i += 1
' "$slot" && return 0
  done
  return 1
}

case "${1:-up}" in
  down) down; exit 0 ;;
  failover)
    old=$(owner "{$NS}")
    pid=$(redis-cli -p "$old" --raw INFO server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
    [ -n "$pid" ] || { log "no primary answers on $old"; exit 1; }
    start=$(date +%s%N)
    kill -9 "$pid"
    log "killed primary 127.0.0.1:$old (pid $pid), owner of {$NS}"
    for _ in $(seq 1 300); do
      new=$(owner "{$NS}" || true)
      if [ -n "$new" ] && [ "$new" != "$old" ]; then
        log "127.0.0.1:$new serves {$NS} after $(( ($(date +%s%N) - start) / 1000000 )) ms"
        exit 0
      fi
      sleep 0.05
    done
    log "no failover within 15 s"; exit 1 ;;
  up) ;;
  *) echo "usage: $0 [up|down|failover]" >&2; exit 2 ;;
esac

for cmd in redis-server redis-cli python3; do
  command -v "$cmd" >/dev/null || { log "missing $cmd"; exit 1; }
done
mkdir -p "$STATE"
for f in "$STATE"/*.pid; do
  [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && { log "already running ($f); 'cargo xtask redis cluster-down' first"; exit 1; }
done
addrs=()
for i in 0 1 2 3 4 5; do
  port=$((BASE + i))
  mkdir -p "$STATE/node$i"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
    --repl-diskless-sync-delay 0 --dir "$STATE/node$i" --daemonize yes \
    --pidfile "$STATE/node$i.pid" --logfile "$STATE/node$i.log"
  addrs+=("127.0.0.1:$port")
done
for port in $(seq "$BASE" $((BASE + 5))); do
  for _ in $(seq 1 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done
done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$STATE/create.log" 2>&1 \
  || { log "cluster create failed (see $STATE/create.log)"; exit 1; }
for _ in $(seq 1 200); do
  if redis-cli -p "$BASE" CLUSTER INFO | grep -q "cluster_state:ok"; then
    log "ready"
    (IFS=,; echo "export REDIS_CLUSTER_NODES=${addrs[*]}")
    exit 0
  fi
  sleep 0.05
done
log "cluster_state not ok within 10 s"
exit 1
