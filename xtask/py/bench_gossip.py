"""Gossip benchmark (not a test): real node processes (release build, L1 only, no TLS,
loopback gossip with a cluster secret, 1 worker thread each) joining through one seed.
For each size it prints, side by side:
  - convergence: from the last process start until every node lists all others alive
    (read from each node's "member up" log lines, timestamped by the node itself);
  - detection: SIGKILL one node at a time (--kills, default 10); time until every survivor
    logged it dead (p50 / p99 / max);
  - steady-state gossip bytes/s sent per node (hc_gossip_bytes_sent_total over --steady s);
  - GET /v1/cluster/stats latency at one non-seed node (p50 / p99 over 100 requests, on-demand
    gathering) and the largest `missing` list seen after the first; the first (cold)
    request on its own;
  - idle RSS per node (median), and false `dead` (a live node logged dead by anyone, from
    the first start on).
  cargo xtask bench gossip --nodes 10,50,100 [--kills 10] [--steady 10] [--cold-start] [--reps 1]

--cold-start starts the processes one after another (each once the previous one answers
/health), each knowing only the seed, instead of all at once; --reps repeats every size and
prints min / median / max over the repetitions of the headline figures.

Run by `cargo xtask bench gossip` (which builds the release binary): argv: BINARY
SIZES(comma-separated) KILLS STEADY_SECS [COLD(0|1) REPS].
"""
import datetime, os, re, signal, statistics, sys, tempfile, time, urllib.request, json
sys.path.insert(0, "xtask/py")
from gossip_procs import start_cluster, stop

BIN, SIZES, KILLS, STEADY = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3]), float(sys.argv[4])
COLD = len(sys.argv) > 5 and sys.argv[5] == "1"
REPS = int(sys.argv[6]) if len(sys.argv) > 6 else 1
LINE = re.compile(r"^(\S+Z)\s+INFO\s+\S+: member (up|down) node=(\S+) peer=(\S+)")

def ts(text):
    return datetime.datetime.strptime(text[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()

def events(logdir, ids):
    """All (time, node, kind, peer) membership events logged so far."""
    out = []
    for i in ids:
        try:
            with open(os.path.join(logdir, f"{i}.log"), errors="replace") as f:
                for line in f:
                    m = LINE.match(line)
                    if m:
                        out.append((ts(m.group(1)), m.group(3), m.group(2), m.group(4)))
        except FileNotFoundError:
            pass
    out.sort()
    return out

def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()

def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0

def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

def q(vals, p):
    v = sorted(vals)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else float("nan")

def run(n):
    logdir = tempfile.mkdtemp(prefix=f"hc-gossip-{n}-")
    procs = {}
    try:
        t_first = time.time()
        ids, http, procs = start_cluster(BIN, n, logdir, "bench-secret-0123456789", one_by_one=COLD)
        t_last = time.time()
        # Convergence: every node has every other one up (replaying its up/down events).
        conv = None
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.5)
            alive = {i: set() for i in ids}
            done_at = {}
            for t, node, kind, peer in events(logdir, ids):
                if node not in alive:
                    continue
                (alive[node].add if kind == "up" else alive[node].discard)(peer)
                if len(alive[node]) == n - 1:
                    done_at[node] = t
                else:
                    done_at.pop(node, None)
            if len(done_at) == n:
                conv = max(done_at.values()) - t_last
                break
        time.sleep(5)  # let the join churn settle
        rss = statistics.median(rss_kb(p.pid) for p in procs.values()) / 1024
        def sent(i):
            try:
                return metric(get(f"http://127.0.0.1:{http[i]}/metrics"), "hc_gossip_bytes_sent_total")
            except OSError:
                return float("nan")
        before = {i: sent(i) for i in ids}
        t0 = time.time()
        time.sleep(STEADY)
        after = {i: sent(i) for i in ids}
        el = time.time() - t0
        bps = statistics.median((after[i] - before[i]) / el for i in ids if after[i] == after[i] and before[i] == before[i])
        # On-demand cluster stats at the seed.
        # 100 requests, 50 ms apart, at a node other than the seed (the seed holds QUIC
        # connections from the joins); the first one opens the QUIC connections (cold) and
        # is also reported on its own.
        asked = ids[n // 2]
        lat, missing, cold = [], 0, None
        for k in range(100):
            s = time.time()
            try:
                doc = json.loads(get(f"http://127.0.0.1:{http[asked]}/v1/cluster/stats"))
                miss = len(doc.get("missing", []))
            except OSError:
                miss = n - 1  # no answer within 5 s: counted as the slowest possible
            lat.append((time.time() - s) * 1000)
            if k == 0:
                cold = (lat[0], miss)
            else:
                missing = max(missing, miss)
            time.sleep(0.05)
        # Kills.
        det, killed = [], set()
        for k in range(min(KILLS, n - 2)):
            victim = ids[n - 1 - k]
            procs[victim].send_signal(signal.SIGKILL)
            t_kill = time.time()
            killed.add(victim)
            survivors = [i for i in ids if i not in killed]
            got = None
            deadline = time.time() + 15
            while time.time() < deadline:
                time.sleep(0.25)
                seen = {}
                for t, node, kind, peer in events(logdir, survivors):
                    if peer == victim and kind == "down" and t >= t_kill and node not in seen:
                        seen[node] = t
                if len(seen) == len(survivors):
                    got = max(seen.values()) - t_kill
                    break
            det.append(got)
            time.sleep(1.0)
        false_dead = sum(1 for t, node, kind, peer in events(logdir, ids)
                         if kind == "down" and peer not in killed)
        ok = [d for d in det if d is not None]
        return dict(n=n, conv=conv, start_spread=t_last - t_first, det=det, p50=q(ok, .5), p99=q(ok, .99),
                    dmax=max(ok) if ok else float("nan"), bps=bps, rss=rss, lat50=q(lat, .5),
                    lat99=q(lat, .99), missing=missing, cold=cold, false_dead=false_dead, undetected=len(det) - len(ok))
    finally:
        stop(procs.values())

def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])

rows = []
for n in SIZES:
    for rep in range(REPS):
        l0 = load1()
        r = run(n)
        r["load"] = (l0, load1())
        r["rep"] = rep
        rows.append(r)
        print(f"# {n} nodes, repetition {rep + 1}/{REPS} done (load average {l0:.1f} before, {r['load'][1]:.1f} after): {r}",
              file=sys.stderr, flush=True)
print(f"mode: {'cold start, one process after another' if COLD else 'all processes at once'}, {REPS} repetition(s)")
fmt = lambda v, d=2: "—" if v is None or v != v else f"{v:.{d}f}"
print("| nodes | started within s | convergence s (after last start) | detection p50 / p99 / max s (kills, undetected) | gossip B/s sent per node (median) | /v1/cluster/stats p50 / p99 ms (max missing) | first (cold) stats ms (missing) | idle RSS MiB (median) | false dead |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['n']} | {fmt(r['start_spread'])} | {fmt(r['conv'])} | {fmt(r['p50'])} / {fmt(r['p99'])} / {fmt(r['dmax'])} ({len(r['det'])}, {r['undetected']}) "
          f"| {fmt(r['bps'], 0)} | {fmt(r['lat50'], 1)} / {fmt(r['lat99'], 1)} ({r['missing']}) | {fmt(r['cold'][0], 1)} ({r['cold'][1]}) | {fmt(r['rss'], 1)} | {r['false_dead']} |")
if REPS > 1:
    def mmm(vals, d=2):
        v = sorted(x for x in vals if x is not None and x == x)
        return f"{fmt(v[0], d)} / {fmt(statistics.median(v), d)} / {fmt(v[-1], d)}" if v else "—"
    print("\n| nodes | reps | convergence s (after last start) | detection max s | detection p50 s | gossip B/s per node | false dead | undetected | load avg before |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in SIZES:
        rs = [r for r in rows if r["n"] == n]
        print(f"| {n} | {len(rs)} | {mmm(r['conv'] if r['conv'] is not None else float('inf') for r in rs)} | {mmm(r['dmax'] for r in rs)} | {mmm(r['p50'] for r in rs)} "
              f"| {mmm((r['bps'] for r in rs), 0)} | {mmm((r['false_dead'] for r in rs), 0)} | {mmm((r['undetected'] for r in rs), 0)} "
              f"| {mmm((r['load'][0] for r in rs), 1)} |")
    print("(min / median / max over the repetitions)")
base = rows[0]["bps"] if rows else 0
if base:
    print("\nbytes/s per node relative to %d nodes: %s" % (rows[0]["n"], ", ".join(f"{r['n']}: {r['bps'] / base:.2f}x" for r in rows)))
