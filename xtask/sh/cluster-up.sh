#!/usr/bin/env bash
# Start a local 3-node cluster described by cluster.toml:
#   redis-server on 127.0.0.1:6390, nodes n1..n3 (release binary), haproxy on
#   127.0.0.1:${HC_LB_PORT:-8080} (round-robin, health-checked on /health).
# Logs and pid files in .cluster/; cargo xtask cluster down stops exactly those pids.
# HC_NO_CARGO=1 skips `cargo build --release`.
set -euo pipefail
# shellcheck source=cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

mkdir -p "$STATE"
ensure_cmd redis-server redis-server
ensure_cmd redis-cli redis-tools
ensure_cmd haproxy haproxy
ensure_cmd curl curl

if [ "${HC_NO_CARGO:-0}" != 1 ]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --locked --bin hybrid-cache >&2)
fi
[ -x "$BIN" ] || die "missing $BIN"

# Refuse to start on ports someone else holds (our own running pieces are fine).
port_busy() { # PROTO HOST:PORT
  python3 - "$1" "$2" <<'PY'
import socket, sys
proto, addr = sys.argv[1], sys.argv[2]
host, port = addr.rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
try:
    if proto == "tcp":
        # TIME_WAIT leftovers do not count, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    if proto == "tcp":
        s.listen()
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}
is_running redis redis-server || ! port_busy tcp "127.0.0.1:$REDIS_PORT" || die "127.0.0.1:$REDIS_PORT in use"
is_running haproxy haproxy || ! port_busy tcp "127.0.0.1:$LB_PORT" || die "127.0.0.1:$LB_PORT in use"
while read -r id http gossip; do
  if ! is_running "$id" hybrid-cache; then
    ! port_busy tcp "$http" || die "$id: $http in use"
    ! port_busy udp "$gossip" || die "$id: $gossip (udp) in use"
  fi
done < <(cluster_nodes)

fail() {
  log "startup failed: $*"
  exit 1
}
# Whatever goes wrong from here on: show the logs, stop what was started.
on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for f in "$STATE"/*.log; do echo "--- tail $f" >&2; tail -n 20 "$f" >&2 || true; done
    "$ROOT/xtask/sh/cluster-down.sh" || true
  fi
}
trap on_exit EXIT

log "redis-server 127.0.0.1:$REDIS_PORT"
start_redis
while read -r id http gossip; do
  log "node $id http=$http gossip=$gossip"
  start_node "$id"
done < <(cluster_nodes)
log "haproxy 127.0.0.1:$LB_PORT"
start_haproxy

# Each node: /health 200 within 60 s, failing early if the process exits.
while read -r id http gossip; do
  end=$(($(date +%s) + 60))
  until wait_http "http://$http/health" 1; do
    is_running "$id" hybrid-cache || fail "$id exited (see $STATE/$id.log)"
    [ "$(date +%s)" -lt "$end" ] || fail "$id /health not 200 after 60 s"
  done
done < <(cluster_nodes)
wait_http "http://127.0.0.1:$LB_PORT/health" 30 || fail "balancer /health not 200"
log "cluster up: http://127.0.0.1:$LB_PORT (nodes: $(cluster_nodes | awk '{printf "%s=%s ", $1, $2}'))"
