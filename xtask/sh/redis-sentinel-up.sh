#!/usr/bin/env bash
# Local Redis Sentinel for development: a primary, two replicas and three sentinels on
# loopback (ports from ${HC_SENTINEL_BASE:-16400}: primary +0, replicas +1 +2, sentinels
# +10 +11 +12; never 6379), master name ${HC_SENTINEL_MASTER:-hcmaster}. State, logs and
# pid files in .sentinel/. Prints the environment a node needs.
#   cargo xtask redis sentinel-up         start (idempotent: refuses if .sentinel has live pids)
#   cargo xtask redis sentinel-down       stop exactly the pids it started
#   cargo xtask redis sentinel-failover   kill the current primary (SIGKILL) and print how
#                                           long until the sentinels name a new one
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${HC_SENTINEL_STATE:-$ROOT/.sentinel}
BASE=${HC_SENTINEL_BASE:-16400}
MASTER=${HC_SENTINEL_MASTER:-hcmaster}
log() { echo "[redis-sentinel-up] $*" >&2; }

down() {
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" && log "stopped $(basename "$f" .pid) ($pid)"; fi
    rm -f "$f"
  done
}

primary_port() { redis-cli -p $((BASE + 10)) --raw SENTINEL get-master-addr-by-name "$MASTER" | sed -n 2p; }

case "${1:-up}" in
  down) down; exit 0 ;;
  failover)
    old=$(primary_port)
    pid=$(redis-cli -p "$old" --raw INFO server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
    [ -n "$pid" ] || { log "no primary answers on $old"; exit 1; }
    start=$(date +%s%N)
    kill -9 "$pid"
    log "killed primary 127.0.0.1:$old (pid $pid)"
    for _ in $(seq 1 300); do
      new=$(primary_port || true)
      if [ -n "$new" ] && [ "$new" != "$old" ]; then
        log "sentinels name 127.0.0.1:$new after $(( ($(date +%s%N) - start) / 1000000 )) ms"
        exit 0
      fi
      sleep 0.05
    done
    log "no new primary within 15 s"; exit 1 ;;
  up) ;;
  *) echo "usage: $0 [up|down|failover]" >&2; exit 2 ;;
esac

for cmd in redis-server redis-sentinel redis-cli; do
  command -v "$cmd" >/dev/null || { log "missing $cmd (apt-get install redis-server redis-sentinel redis-tools)"; exit 1; }
done
mkdir -p "$STATE"
for f in "$STATE"/*.pid; do
  [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && { log "already running ($f); 'cargo xtask redis sentinel-down' first"; exit 1; }
done

server() { # NAME PORT [ARGS...]
  local name=$1 port=$2; shift 2
  mkdir -p "$STATE/$name"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --repl-diskless-sync-delay 0 --dir "$STATE/$name" --daemonize yes \
    --pidfile "$STATE/$name.pid" --logfile "$STATE/$name.log" "$@"
}
server primary "$BASE"
server replica1 $((BASE + 1)) --replicaof 127.0.0.1 "$BASE"
server replica2 $((BASE + 2)) --replicaof 127.0.0.1 "$BASE"
for i in 0 1 2; do
  port=$((BASE + 10 + i))
  conf="$STATE/sentinel$i.conf"
  cat > "$conf" <<CONF
port $port
bind 127.0.0.1
daemonize yes
pidfile $STATE/sentinel$i.pid
logfile $STATE/sentinel$i.log
dir $STATE
sentinel resolve-hostnames no
sentinel monitor $MASTER 127.0.0.1 $BASE 2
sentinel down-after-milliseconds $MASTER 1000
sentinel failover-timeout $MASTER 5000
sentinel parallel-syncs $MASTER 1
CONF
  redis-sentinel "$conf"
done
for _ in $(seq 1 100); do
  if redis-cli -p $((BASE + 10)) INFO sentinel 2>/dev/null | grep -q "slaves=2,sentinels=3"; then
    log "ready"
    echo "export REDIS_SENTINELS=127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 11)),127.0.0.1:$((BASE + 12)) REDIS_SENTINEL_MASTER=$MASTER"
    exit 0
  fi
  sleep 0.1
done
log "sentinels did not see 2 replicas and 3 sentinels within 10 s (see $STATE/*.log)"
exit 1
