#!/usr/bin/env bash
# Soak test: 3 nodes + their own redis-server behind haproxy, all on free loopback ports
# (state in .soak/, never the ports of cluster.toml), under mixed bounded load with periodic
# faults, sampling every node's RSS, open file descriptors, L2 backlog (`hc_l2_backlog`
# of /metrics) and mailbox depths (sum of `hc_mailbox_depth`, bounded by construction:
# reported, not fitted) every 10 s. Fails when, after the warm-up, any of them grows faster than
# its stated slope (least-squares fit over the post-warm-up samples of one process):
#   RSS  > SOAK_MAX_RSS_MIB_PER_MIN  (default 1.0 MiB/min)
#   fds  > SOAK_MAX_FDS_PER_MIN      (default 2 per min)
#   backlog > SOAK_MAX_BACKLOG_PER_MIN (default 5 per min)
#
#   cargo xtask soak node [--duration SECONDS] [--warmup SECONDS]   (defaults 600 / 120)
#
# Load: two loadcheck.py workers (PUT/GET/DELETE/invalidate, a new connection per request,
# bounded keys, bounded request count) on two categories, plus 64 KiB values on a third.
# Faults, one per minute in turn: SIGKILL redis + restart; SIGSTOP a node for 5 s; SIGKILL
# node n3 + restart (a restarted process starts a new series).
# Prints a Markdown table (per node: first/last post-warm-up sample and slopes) and writes
# .soak/samples.csv. Uses target/release/hybrid-cache (built if missing).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export HC_CLUSTER_STATE=$ROOT/.soak
DURATION=600
WARMUP=120
ANALYZE=""
while [ $# -gt 0 ]; do
  case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --analyze) ANALYZE=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--warmup S] [--analyze samples.csv]" >&2; exit 2 ;;
  esac
done
analyze() {
python3 - "$1" "$WARMUP" "${SOAK_MAX_RSS_MIB_PER_MIN:-1.0}" \
  "${SOAK_MAX_FDS_PER_MIN:-2}" "${SOAK_MAX_BACKLOG_PER_MIN:-5}" <<'EOF'
import csv, sys
path, warmup = sys.argv[1], float(sys.argv[2])
lim_rss, lim_fds, lim_bl = map(float, sys.argv[3:6])
# Warm-up counts per process: a node restarted by a fault refills its caches too.
first_seen = {}
series = {}
for r in csv.DictReader(open(path)):
    key = (r["node"], r["pid"])
    first_seen.setdefault(key, float(r["t"]))
    if float(r["t"]) < first_seen[key] + warmup:
        continue
    series.setdefault(key, []).append(r)
def slope(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    d = sum((x - mx) ** 2 for x in xs)
    return 0.0 if d == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / d
fail = []
print("\n| node (pid) | samples | RSS MiB first→last | RSS slope MiB/min | fds first→last | fd slope /min | L2 backlog max | backlog slope /min | mailbox depth max |")
print("|---|---|---|---|---|---|---|---|---|")
for (node, pid), rows in sorted(series.items()):
    if len(rows) < 6:   # a restarted process's short tail: too few points for a slope
        print(f"| {node} ({pid}) | {len(rows)} | (too short for a slope) | | | | | | |")
        continue
    t = [float(r["t"]) / 60 for r in rows]
    rss = [int(r["rss_kib"]) / 1024 for r in rows]
    fds = [int(r["fds"]) for r in rows]
    bl = [int(r["l2_backlog"]) if r["l2_backlog"] else 0 for r in rows]
    mb = [int(r.get("mailboxes") or 0) for r in rows]
    s_rss, s_fds, s_bl = slope(t, rss), slope(t, fds), slope(t, bl)
    print(f"| {node} ({pid}) | {len(rows)} | {rss[0]:.1f}→{rss[-1]:.1f} | {s_rss:+.2f} | {fds[0]}→{fds[-1]} | {s_fds:+.2f} | {max(bl)} | {s_bl:+.2f} | {max(mb)} |")
    if s_rss > lim_rss: fail.append(f"{node} RSS slope {s_rss:.2f} MiB/min > {lim_rss}")
    if s_fds > lim_fds: fail.append(f"{node} fd slope {s_fds:.2f}/min > {lim_fds}")
    if s_bl > lim_bl: fail.append(f"{node} backlog slope {s_bl:.2f}/min > {lim_bl}")
print(f"\nlimits: RSS {lim_rss} MiB/min, fds {lim_fds}/min, backlog {lim_bl}/min after {warmup:.0f} s warm-up")
if fail:
    print("FAIL: " + "; ".join(fail))
    sys.exit(1)
print("PASS: nothing grows past its slope")
EOF
}
if [ -n "$ANALYZE" ]; then analyze "$ANALYZE"; exit $?; fi
[ "$WARMUP" -lt "$DURATION" ] || { echo "warm-up must be shorter than the duration" >&2; exit 2; }

# Eight distinct free loopback ports from the shared test harness (hc-testkit: below the
# ephemeral range, free for TCP and UDP, never 6379): balancer, redis, then http and gossip
# of n1..n3. `cargo xtask soak node` sets HC_TESTKIT.
TESTKIT=${HC_TESTKIT:-$ROOT/target/debug/hc-testkit}
[ -x "$TESTKIT" ] || (cd "$ROOT" && cargo build -q -p hc-testkit)
read -r -a PORTS < <("$TESTKIT" free-port --count 8 | tr -c '0-9,' ' ' | tr ',' ' '; echo)
[ "${#PORTS[@]}" -eq 8 ] || { echo "hc-testkit free-port failed" >&2; exit 2; }
STATE=$HC_CLUSTER_STATE
mkdir -p "$STATE"
export HC_CLUSTER_CONFIG=$STATE/soak.toml
export HC_LB_PORT=${PORTS[0]}
# shellcheck source=cluster-lib.sh
source "$ROOT/xtask/sh/cluster-lib.sh"
REDIS_PORT=${PORTS[1]}

ensure_cmd redis-server redis-server
ensure_cmd haproxy haproxy
if [ ! -x "$BIN" ]; then
  log "building the release binary"
  (cd "$ROOT" && cargo build --release --bin hybrid-cache)
fi

{
  echo "namespace = \"soak\""
  echo "isolation_grace_ms = 1000"
  echo "cluster_secret = \"soak-cluster-secret-local\""
  echo "[redis]"
  echo "url = \"redis://127.0.0.1:$REDIS_PORT/0\""
  k=2
  for n in n1 n2 n3; do
    echo "[[nodes]]"
    echo "id = \"$n\""
    echo "http = \"127.0.0.1:${PORTS[k]}\""
    echo "gossip = \"127.0.0.1:${PORTS[k + 1]}\""
    k=$((k + 2))
  done
} >"$HC_CLUSTER_CONFIG"

LOAD_PIDS=()
SAMPLER_PID=""
cleanup() {
  for p in "${LOAD_PIDS[@]}" $SAMPLER_PID; do kill "$p" 2>/dev/null || true; done
  for n in n1 n2 n3; do kill -CONT "$(pid_of "$n" 2>/dev/null)" 2>/dev/null || true; stop_proc "$n" hybrid-cache; done
  stop_proc haproxy haproxy
  stop_proc redis redis-server
}
trap cleanup EXIT

start_redis
for n in n1 n2 n3; do start_node "$n"; done
for n in n1 n2 n3; do wait_http "http://$(node_http "$n")/health" 30 || die "$n did not start"; done
start_haproxy
LB=http://127.0.0.1:$HC_LB_PORT
wait_http "$LB/health" 30 || die "haproxy did not start"
log "cluster up: lb $LB, redis $REDIS_PORT; soak ${DURATION}s (warm-up ${WARMUP}s)"

# The sampler: every 10 s, one CSV row per node process.
python3 - "$STATE" "$DURATION" >"$STATE/samples.csv" <<'EOF' &
import os, sys, time, urllib.request
state, duration = sys.argv[1], float(sys.argv[2])
nodes = ["n1", "n2", "n3"]
def http_of(n):
    import tomllib
    cfg = tomllib.load(open(os.path.join(state, "soak.toml"), "rb"))
    return next(x["http"] for x in cfg["nodes"] if x["id"] == n)
urls = {n: http_of(n) for n in nodes}
print("t,node,pid,rss_kib,fds,l2_backlog,mailboxes", flush=True)
t0 = time.monotonic()
while time.monotonic() - t0 <= duration:
    t = round(time.monotonic() - t0)
    for n in nodes:
        try:
            pid = int(open(os.path.join(state, f"{n}.pid")).read().strip())
            rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, ValueError, StopIteration):
            continue
        backlog, mailboxes = "", ""
        try:
            text = urllib.request.urlopen(f"http://{urls[n]}/metrics", timeout=2).read().decode()
            backlog = next((l.split()[-1] for l in text.splitlines() if l.startswith("hc_l2_backlog ")), "")
            mailboxes = str(sum(int(float(l.split()[-1])) for l in text.splitlines() if l.startswith("hc_mailbox_depth{")))
        except OSError:
            pass
        print(f"{t},{n},{pid},{rss},{fds},{backlog},{mailboxes}", flush=True)
    time.sleep(10 - (time.monotonic() - t0) % 10)
EOF
SAMPLER_PID=$!

LC="python3 $ROOT/xtask/py/loadcheck.py load --url $LB --duration $DURATION --grace-ms 500"
$LC --max-requests 3000000 --keys 256 --concurrency 4 --category general --label soak-general --run s1 \
  >"$STATE/load-general.json" 2>&1 &
LOAD_PIDS+=($!)
$LC --max-requests 3000000 --keys 512 --concurrency 2 --category permissions --write-ratio 0.5 --label soak-perm --run s2 \
  >"$STATE/load-perm.json" 2>&1 &
LOAD_PIDS+=($!)
# Large values: 64 KiB PUT/GET over 200 keys in `prompts`, bounded by the duration.
python3 - "$LB" "$DURATION" >"$STATE/load-large.log" 2>&1 <<'EOF' &
import sys, time, random, http.client, urllib.parse
lb, duration = sys.argv[1], float(sys.argv[2])
u = urllib.parse.urlsplit(lb)
end = time.monotonic() + duration
body = bytes(random.getrandbits(8) for _ in range(65536))
n = errors = 0
while time.monotonic() < end and n < 2_000_000:
    k = random.randrange(200)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=3)
        if n % 3 == 0:
            c.request("PUT", f"/v1/cache/prompts/big{k}", body=body)
        else:
            c.request("GET", f"/v1/cache/prompts/big{k}")
        c.getresponse().read()
        c.close()
    except OSError:
        errors += 1
    n += 1
print(f"large-value requests={n} errors={errors}")
EOF
LOAD_PIDS+=($!)

start=$(date +%s)
cycle=0
while [ $(($(date +%s) - start)) -lt $((DURATION - 30)) ]; do
  sleep 60
  [ $(($(date +%s) - start)) -lt $((DURATION - 30)) ] || break
  case $((cycle % 3)) in
    0) log "fault: SIGKILL redis, restart after 3 s"
       stop_proc redis redis-server KILL; sleep 3; start_redis ;;
    1) victim=n2; log "fault: SIGSTOP $victim for 5 s"
       pid=$(pid_of "$victim"); kill -STOP "$pid"; sleep 5; kill -CONT "$pid" ;;
    2) log "fault: SIGKILL n3, restart"
       stop_proc n3 hybrid-cache KILL; sleep 1; start_node n3
       wait_http "http://$(node_http n3)/health" 30 || log "n3 did not come back within 30 s" ;;
  esac
  cycle=$((cycle + 1))
done
for p in "${LOAD_PIDS[@]}"; do wait "$p" || true; done
LOAD_PIDS=()
wait "$SAMPLER_PID" || true
SAMPLER_PID=""

echo "== load"
for f in load-general.json load-perm.json; do tail -n1 "$STATE/$f"; done
cat "$STATE/load-large.log"

analyze "$STATE/samples.csv"
