"""Gossip soak (not a test): N real node processes (release build, L1 only, no TLS, loopback
gossip with a cluster secret, 1 worker thread each, each joining through one seed) under
HTTP request load for --secs seconds, nothing killed. Counts false failure detections:
every "member down" logged by any node about a node that was never stopped (a false
suspect -> dead), and every restart/renewed identity. Also prints the request count and
rate wrk achieved and the load average.
  cargo xtask soak gossip [--nodes 100] [--secs 600] [--wrk 4]
Bounded: each wrk runs for exactly --secs (-d), with 2 connections and 1 thread; the whole
script stops every process it started (by pid) when done or interrupted.

Run by `cargo xtask soak gossip` (which builds the release binary): argv: BINARY NODES SECS WRK.
"""
import os, random, re, subprocess, sys, tempfile, time
sys.path.insert(0, "xtask/py")
from gossip_procs import start_cluster, stop

BIN, N, SECS, WRK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def scan(logdir, ids):
    ups = downs = renew = defunct = 0
    alive = {i: set() for i in ids}
    for i in ids:
        with open(os.path.join(logdir, f"{i}.log"), errors="replace") as f:
            for line in f:
                if "member down" in line:
                    downs += 1
                elif "member up" in line:
                    ups += 1
                    m = re.search(r"peer=(\S+)", line)
                    if m:
                        alive[i].add(m.group(1))
                elif "renewed its identity" in line:
                    renew += 1
                elif "declared down by the cluster" in line:
                    defunct += 1
    return ups, downs, renew, defunct, alive

lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
lua.write("""
counter = 0
request = function()
  counter = counter + 1
  local k = counter % 1000
  if counter % 10 == 0 then
    return wrk.format("PUT", "/v1/cache/general/k" .. k, nil, "v" .. counter)
  end
  return wrk.format("GET", "/v1/cache/general/k" .. k)
end
""")
lua.close()

logdir = tempfile.mkdtemp(prefix=f"hc-soak-{N}-")
procs, wrks = {}, []
try:
    ids, http, procs = start_cluster(BIN, N, logdir, "soak-secret-0123456789")
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(1)
        _, _, _, _, alive = scan(logdir, ids)
        if all(len(alive[i]) == N - 1 for i in ids):
            break
    else:
        print("did not converge within 60 s", file=sys.stderr)
        sys.exit(1)
    time.sleep(5)
    ups0, downs0, renew0, defunct0, _ = scan(logdir, ids)
    load0 = os.getloadavg()
    targets = random.Random(1).sample(ids, min(WRK, N))
    for i in targets:
        wrks.append(subprocess.Popen(
            ["wrk", "-t1", "-c2", f"-d{SECS}s", "-s", lua.name, f"http://127.0.0.1:{http[i]}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    loads = []
    t_end = time.time() + SECS
    while time.time() < t_end:
        time.sleep(min(30, max(0.1, t_end - time.time())))
        loads.append(os.getloadavg()[0])
    requests = 0
    for w in wrks:
        out, _ = w.communicate(timeout=SECS + 60)
        m = re.search(r"(\d+) requests in", out)
        requests += int(m.group(1)) if m else 0
    ups1, downs1, renew1, defunct1, _ = scan(logdir, ids)
    dead_procs = [i for i, p in procs.items() if p.poll() is not None]
    print(f"| nodes | soak s | requests (per s) | load avg 1-min min / median / max | false dead | renewals | nodes declared down | processes exited |")
    print(f"|---|---|---|---|---|---|---|---|")
    loads.sort()
    med = loads[len(loads) // 2] if loads else float('nan')
    print(f"| {N} | {SECS} | {requests} ({requests / SECS:.0f}) | {min(loads or [0]):.1f} / {med:.1f} / {max(loads or [0]):.1f} "
          f"| {downs1 - downs0} | {renew1 - renew0} | {defunct1 - defunct0} | {len(dead_procs)} |")
    print(f"(logs in {logdir}; during the join: {downs0} down, {renew0} renewals)")
    sys.exit(0 if downs1 == downs0 and not dead_procs else 1)
finally:
    stop(list(procs.values()) + wrks)
    os.unlink(lua.name)
