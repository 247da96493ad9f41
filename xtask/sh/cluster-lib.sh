# shellcheck shell=bash
# Helpers shared by cluster-up.sh, cluster-down.sh and chaos.sh (sourced, not run).
# Every process started here records its pid in $STATE/<name>.pid and logs to
# $STATE/<name>.log; stop_proc only ever signals a recorded pid, and only if
# that pid still runs the program it was recorded for.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${HC_CLUSTER_STATE:-$ROOT/.cluster}
CONFIG=${HC_CLUSTER_CONFIG:-$ROOT/cluster.toml}
BIN=${HC_BIN:-$ROOT/target/release/hybrid-cache}
REDIS_PORT=6390
LB_PORT=${HC_LB_PORT:-8080}

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ensure_cmd CMD PACKAGE: apt-get install PACKAGE when CMD is missing.
ensure_cmd() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    log "installing $2 (apt-get)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
  fi
}
haproxy_bin() { command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy; }

# Node ids and addresses from cluster.toml: lines "id http gossip".
cluster_nodes() {
  python3 - "$CONFIG" <<'EOF'
import sys, tomllib
cfg = tomllib.load(open(sys.argv[1], "rb"))
for n in cfg.get("nodes", []):
    print(n["id"], n["http"], n["gossip"])
EOF
}
node_http() { cluster_nodes | awk -v id="$1" '$1 == id { print $2 }'; }

pid_of() { [ -s "$STATE/$1.pid" ] && cat "$STATE/$1.pid"; }

# is_running NAME PROGRAM: the recorded pid is alive and runs PROGRAM.
is_running() {
  local pid
  pid=$(pid_of "$1") || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# stop_proc NAME PROGRAM [SIGNAL]: signal the recorded pid (TERM, then KILL
# after 5 s); SIGNAL=KILL kills at once. Removes the pid file.
stop_proc() {
  local name=$1 prog=$2 sig=${3:-TERM} pid i
  pid=$(pid_of "$name") || return 0
  if is_running "$name" "$prog"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      [ -d "/proc/$pid" ] || break
      # A zombie (not reaped by its parent) counts as gone.
      grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$STATE/$name.pid"
}

# The environment must not redirect the nodes away from cluster.toml.
clean_node_env() {
  unset REDIS_URL REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DB REDIS_SSL \
    HC_CONFIG HC_NODE_ID HC_HTTP HC_HTTP_ADVERTISE HC_GOSSIP HC_GOSSIP_ADVERTISE \
    HC_PEERS HC_NAMESPACE HC_API_TOKEN HC_TLS_CA HC_TLS_CERT HC_TLS_KEY HC_ISOLATION_GRACE_MS
}

start_redis() {
  is_running redis redis-server && { log "redis already running"; return 0; }
  mkdir -p "$STATE/redis-data"
  nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$STATE/redis-data" >>"$STATE/redis.log" 2>&1 &
  echo $! >"$STATE/redis.pid"
  local i
  for i in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis-server on 127.0.0.1:$REDIS_PORT did not answer PING (see $STATE/redis.log)"
}

start_node() {
  local id=$1
  is_running "$id" hybrid-cache && { log "$id already running"; return 0; }
  (
    clean_node_env
    export RUST_LOG=${RUST_LOG:-info}
    cd "$ROOT"
    exec nohup "$BIN" node --config "$CONFIG" --node-id "$id" >>"$STATE/$id.log" 2>&1
  ) &
  echo $! >"$STATE/$id.pid"
}

# wait_http URL [TIMEOUT_S] [EXPECTED_STATUS]
wait_http() {
  local url=$1 timeout=${2:-30} want=${3:-200} end code
  end=$(($(date +%s) + timeout))
  while [ "$(date +%s)" -lt "$end" ]; do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
    [ "$code" = "$want" ] && return 0
    sleep 0.2
  done
  return 1
}

write_haproxy_cfg() {
  local servers="" id http gossip
  while read -r id http gossip; do
    servers+="    server $id $http check"$'\n'
  done < <(cluster_nodes)
  python3 - "$ROOT/xtask/sh/haproxy-local.cfg.in" "$STATE/haproxy.cfg" "$LB_PORT" "$servers" <<'EOF'
import sys
src, dst, port, servers = sys.argv[1:5]
text = open(src).read().replace("@LB_PORT@", port).replace("@SERVERS@", servers.rstrip("\n"))
open(dst, "w").write(text)
EOF
}

start_haproxy() {
  is_running haproxy haproxy && { log "haproxy already running"; return 0; }
  write_haproxy_cfg
  "$(haproxy_bin)" -c -q -f "$STATE/haproxy.cfg" || die "invalid $STATE/haproxy.cfg"
  nohup "$(haproxy_bin)" -db -f "$STATE/haproxy.cfg" >>"$STATE/haproxy.log" 2>&1 &
  echo $! >"$STATE/haproxy.pid"
}
