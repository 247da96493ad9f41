#!/usr/bin/env python3
"""Node vs redis-server, side by side (issues #17 and #25). Run through `cargo xtask bench node`.

Every pair runs interleaved (node, then baseline) in each repetition; the table gives the
min/median/max of each ratio over the repetitions. CPU per request is the server's
utime+stime delta from /proc/<pid>/stat divided by the requests served (node + Redis when the
node uses Redis). Load generators (wrk, redis-benchmark) run on the same machine.

HC_BIN_BEFORE (another build's binary, e.g. of the commit before a change) adds a second
node build to every repetition: both builds run against the same redis-server in each
repetition, one after the other, and each gets its own table, so a change is measured as
before/after ratios of one run.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client

from ports import free_port, redis_server_command

REPS = int(os.environ.get("REPS", "3"))
ENTRIES = int(os.environ.get("ENTRIES", "100000"))
SECS = int(os.environ.get("SECS", "4"))
CONNS = int(os.environ.get("CONNS", "64"))
# wrk threads: 1 by default, like redis-benchmark (one thread) on the baseline side. On the
# 2-core machine a second client thread competes with the server for the cores, and the
# server's CPU per request grows with the preemptions (docs/benchmarks.md, the run of 2026-12-07 04:29).
WRK_THREADS = int(os.environ.get("WRK_THREADS", "1"))
# PARTS=put (comma-separated: mem, get, put, l2, resp) runs only those parts; default all.
# PERF_DIR=dir records `perf record -g` of the node during each wrk run (perf on PATH);
# PERF_CALL_GRAPH=dwarf records stacks through frames without frame pointers.
PARTS = set(os.environ.get("PARTS", "mem,get,put,l2,resp").split(","))
BINS = ([("before (HC_BIN_BEFORE)", os.environ["HC_BIN_BEFORE"])]
        if os.environ.get("HC_BIN_BEFORE") else [])
BINS.append(("this build (HC_BIN)", os.environ["HC_BIN"]))
MOKA = os.environ["HC_MOKA"]
# examples/hyper_floor: a bare hyper server answering the same 100-byte body (the floor of
# the L1-hit HTTP figure); its row is left out without it.
FLOOR = os.environ.get("HC_HYPER_FLOOR")
TICK = os.sysconf("SC_CLK_TCK")
VALUE = b"v" * 100
TMP = tempfile.mkdtemp(prefix="bench-node-")
procs = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_port(port, proc):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_redis():
    port = free_port()
    p = subprocess.Popen(redis_server_command(port, TMP),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(port, p)
    return p, port


def start_node(binary, redis_port=None):
    cfg = os.path.join(TMP, "node.toml")
    with open(cfg, "w") as f:
        f.write("[categories.bench]\nttl_secs = 3600\nmax_entries = 10000000\n"
                "[categories.l2b]\nttl_secs = 3600\nmax_entries = 16\n")
    http, resp = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HC_", "REDIS_"))}
    env["RUST_LOG"] = "warn"
    args = [binary, "node", "--config", cfg, "--http", f"127.0.0.1:{http}",
            "--resp", f"127.0.0.1:{resp}"]
    if redis_port:
        args += ["--redis-url", f"redis://127.0.0.1:{redis_port}"]
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    wait_port(http, p)
    wait_port(resp, p)
    return p, http, resp


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    procs.remove(p)


def http_put_range(port, lo, hi, threads=4):
    def work(t):
        c = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(lo + t, hi, threads):
            c.request("PUT", f"/v1/cache/bench/{i:010d}", body=VALUE)
            r = c.getresponse()
            r.read()
            if r.status != 204:
                raise RuntimeError(f"PUT -> {r.status}")
        c.close()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def redis_fill(port, lo, hi):
    out = bytearray()
    for i in range(lo, hi):
        k = f"{i:010d}".encode()
        out += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(VALUE), VALUE)
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=bytes(out), check=True,
                   stdout=subprocess.DEVNULL)


def memory_rep(binary):
    warm = ENTRIES // 10
    node, hp, _ = start_node(binary)
    http_put_range(hp, 10**9, 10**9 + warm)
    before = rss(node.pid)
    http_put_range(hp, 0, ENTRIES)
    node_b = (rss(node.pid) - before) / ENTRIES
    stop(node)
    red, rp = start_redis()
    redis_fill(rp, 10**9, 10**9 + warm)
    before = rss(red.pid)
    redis_fill(rp, 0, ENTRIES)
    redis_b = (rss(red.pid) - before) / ENTRIES
    stop(red)
    out = subprocess.run([MOKA, str(ENTRIES), str(len(VALUE))], capture_output=True,
                         text=True, check=True).stdout
    moka_b = int(out.split("bytes_per_entry=")[1].split()[0])
    log(f"  memory B/entry: node {node_b:.0f}  redis {redis_b:.0f}  raw moka {moka_b}")
    return {"mem_node_vs_redis": node_b / redis_b, "mem_node_vs_moka": node_b / moka_b,
            "_mem_node": node_b, "_mem_redis": redis_b, "_mem_moka": moka_b}


def parse_latency(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)


def wrk(port, path, pids, script=None):
    args = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNS}", f"-d{SECS}s", "--latency"]
    if script:
        args += ["-s", script]
    c0 = [cpu_secs(p) for p in pids]
    perf = profile(pids[0], script or path)
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True,
                         text=True, check=True).stdout
    split = [cpu_secs(p) - c for p, c in zip(pids, c0)]
    cpu = sum(split)
    if perf:
        perf.wait()
    n = int(out.split(" requests in ")[0].split()[-1])
    rps = float(out.split("Requests/sec:")[1].split()[0])
    p99 = parse_latency(out.split(" 99%")[1].split()[0])
    non2xx = "Non-2xx" in out
    if non2xx:
        log("  WARNING: wrk saw non-2xx answers:\n" + out)
    res = {"rps": rps, "cpu_us": cpu / n * 1e6, "p99_ms": p99}
    if len(pids) > 1:
        # The node's and Redis's shares of the CPU per request.
        res["node_us"], res["redis_us"] = (split[0] / n * 1e6, split[1] / n * 1e6)
    return res


def profile(pid, what):
    """With PERF_DIR set: `perf record -g` of the node `pid` for the wrk run of `what` (one
    file per run, `perf-<what>-<n>.data`, for `perf report -i`); None otherwise."""
    out_dir = os.environ.get("PERF_DIR")
    if not out_dir:
        return None
    os.makedirs(out_dir, exist_ok=True)
    name = os.path.basename(what).replace("/", "") or "root"
    n = len([f for f in os.listdir(out_dir) if f.startswith(f"perf-{name}-")])
    out = os.path.join(out_dir, f"perf-{name}-{n}.data")
    graph = ["--call-graph", os.environ["PERF_CALL_GRAPH"]] if os.environ.get("PERF_CALL_GRAPH") else ["-g"]
    return subprocess.Popen(["perf", "record", "-F", "999", *graph, "-p", str(pid), "-o", out,
                             "--", "sleep", str(SECS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench(port, pids, cmd, n):
    c0 = sum(cpu_secs(p) for p in pids)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", str(CONNS), "-n", str(n),
                          "-r", "100000", "--csv"] + cmd, capture_output=True, text=True,
                         check=True).stdout
    cpu = sum(cpu_secs(p) for p in pids) - c0
    row = [x.strip('"') for x in out.strip().splitlines()[-1].split(",")]
    return {"rps": float(row[1]), "cpu_us": cpu / n * 1e6, "p99_ms": float(row[6])}


def script(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


PUT_LUA = script("put.lua", f"""
wrk.method = "PUT"
wrk.body = string.rep("v", {len(VALUE)})
request = function()
  return wrk.format(nil, string.format("/v1/cache/bench/%010d", math.random(0, 99999)))
end
""")
L2_LUA = script("l2.lua", """
request = function()
  return wrk.format(nil, string.format("/v1/cache/l2b/%010d", math.random(0, 9999)))
end
""")


def throughput_rep(l1node, l2node, red):
    (n1, h1, r1), (n2, h2, _r2), (rd, rp) = l1node, l2node, red
    res = {}
    # L1-hit GET over HTTP vs redis GET (same key, 100-byte value).
    if "get" in PARTS:
        a = wrk(h1, "/v1/cache/bench/hot", [n1.pid])
        b = bench(rp, [rd.pid], ["GET", "bench/hot"], 200000)
        log(f"  L1 GET http: {a}  redis GET: {b}")
        res["get_cpu"] = a["cpu_us"] / b["cpu_us"]
        res["get_p99"] = a["p99_ms"] / b["p99_ms"]
        res["get_rps"] = a["rps"] / b["rps"]
        if FLOOR:
            port = free_port()
            floor = subprocess.Popen([FLOOR, f"127.0.0.1:{port}", str(len(VALUE))],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(floor)
            wait_port(port, floor)
            f = wrk(port, "/v1/cache/bench/hot", [floor.pid])
            stop(floor)
            log(f"  bare hyper: {f}")
            res["floor_cpu"] = f["cpu_us"] / b["cpu_us"]
            res["floor_p99"] = f["p99_ms"] / b["p99_ms"]
    # PUT with Redis (bounded mode) vs SET.
    if "put" in PARTS:
        a = wrk(h2, "/", [n2.pid, rd.pid], PUT_LUA)
        b = bench(rp, [rd.pid], ["SET", "bench/key:__rand_int__", VALUE.decode()], 200000)
        log(f"  PUT (L2): {a}  redis SET: {b}")
        res["put_rps"] = a["rps"] / b["rps"]
        res["put_cpu"] = a["cpu_us"] / b["cpu_us"]
    # L2 hit (L1 of 16 entries, 10,000 keys in Redis) vs redis GET.
    if "l2" in PARTS:
        a = wrk(h2, "/", [n2.pid, rd.pid], L2_LUA)
        b = bench(rp, [rd.pid], ["GET", "bench/hot"], 200000)
        log(f"  L2 hit GET: {a}  redis GET: {b}")
        res["l2_cpu"] = a["cpu_us"] / b["cpu_us"]
        res["l2_rps"] = a["rps"] / b["rps"]
    # redis-benchmark GET: node's RESP port vs redis-server.
    if "resp" in PARTS:
        a = bench(r1, [n1.pid], ["GET", "bench/hot"], 200000)
        b = bench(rp, [rd.pid], ["GET", "bench/hot"], 200000)
        log(f"  RESP GET node: {a}  redis: {b}")
        res["resp_rps"] = a["rps"] / b["rps"]
        res["resp_cpu"] = a["cpu_us"] / b["cpu_us"]
    return res


# Goals: issue #25's (memory vs redis-server and the throughputs without a goal: info).
ROWS = [
    ("mem_node_vs_redis", "Memory per entry, node / redis-server", "(info)"),
    ("mem_node_vs_moka", "Memory per entry, node / raw moka", "<= 1.0"),
    ("get_cpu", "L1-hit GET (HTTP, wrk) server CPU/req, node / redis GET", "<= 1.3"),
    ("get_p99", "L1-hit GET p99, node / redis GET", "<= 1.5"),
    ("get_rps", "L1-hit GET throughput, node / redis GET", "(info)"),
    ("floor_cpu", "Bare hyper (examples/hyper_floor) CPU/req / redis GET", "(info)"),
    ("floor_p99", "Bare hyper p99 / redis GET", "(info)"),
    ("put_rps", "PUT with Redis throughput, node / redis SET", ">= 0.5"),
    ("put_cpu", "PUT with Redis CPU/req (node+Redis) / redis SET", "<= 3.0"),
    ("l2_cpu", "L2-hit GET CPU/req (node+Redis) / redis GET", "<= 2.0"),
    ("l2_rps", "L2-hit GET throughput, node / redis GET", ">= 0.8"),
    ("resp_rps", "redis-benchmark GET throughput, node RESP / redis", "(info)"),
    ("resp_cpu", "redis-benchmark GET CPU/req, node RESP / redis", "<= 1.0"),
]


def verdict(goal, med):
    # At the precision the table prints (1.0004 is the 1.00 shown, and meets "<= 1.0").
    med = round(med, 2)
    if goal.startswith("<="):
        return "meets" if med <= float(goal[2:]) else "MISSES"
    if goal.startswith(">="):
        return "meets" if med >= float(goal[2:]) else "MISSES"
    return ""


def start_nodes(binary, red):
    """An L1-only node and a node on `red`, with the fixtures: the hot key on both sides,
    10,000 L2 keys through the node (so they are in Redis in the node's format)."""
    l1node = start_node(binary)
    l2node = start_node(binary, red[1])
    c = http.client.HTTPConnection("127.0.0.1", l1node[1])
    c.request("PUT", "/v1/cache/bench/hot", body=VALUE)
    c.getresponse().read()
    c = http.client.HTTPConnection("127.0.0.1", l2node[1])
    for i in range(10000 if "l2" in PARTS else 0):
        c.request("PUT", f"/v1/cache/l2b/{i:010d}", body=VALUE)
        c.getresponse().read()
    return l1node, l2node


def table(reps):
    print("| ratio | goal | min | median | max | |")
    print("|---|---|---|---|---|---|")
    for key, label, goal in ROWS:
        if key not in reps[0]:
            continue
        v = sorted(r[key] for r in reps)
        med = statistics.median(v)
        print(f"| {label} | {goal} | {v[0]:.2f} | {med:.2f} | {v[-1]:.2f} | {verdict(goal, med)} |")


def main():
    red = start_redis()
    subprocess.run(["redis-cli", "-p", str(red[1]), "SET", "bench/hot", VALUE], check=True,
                   stdout=subprocess.DEVNULL)
    reps = {label: [] for label, _ in BINS}
    for r in range(REPS):
        for label, binary in BINS:
            log(f"repetition {r + 1}/{REPS}: {label}")
            l1node, l2node = start_nodes(binary, red)
            res = memory_rep(binary) if "mem" in PARTS else {}
            res.update(throughput_rep(l1node, l2node, red))
            stop(l1node[0])
            stop(l2node[0])
            reps[label].append(res)
    for p in list(procs):
        stop(p)
    version = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True).stdout.split()[2].removeprefix("v=")
    print(f"\nnode vs redis-server {version},"
          f" {REPS} interleaved repetitions, {CONNS} connections, {os.cpu_count()} CPUs,"
          f" {ENTRIES} entries of 10 B key + {len(VALUE)} B value\n")
    for label, binary in BINS:
        runs = reps[label]
        if len(BINS) > 1:
            print(f"### {label}: {binary}\n")
        if "mem" in PARTS:
            m = ([x["_mem_node"] for x in runs], [x["_mem_redis"] for x in runs],
                 [x["_mem_moka"] for x in runs])
            print(f"Memory per entry (median): node {statistics.median(m[0]):.0f} B, "
                  f"redis-server {statistics.median(m[1]):.0f} B, "
                  f"raw moka {statistics.median(m[2]):.0f} B\n")
        table(runs)
        print()


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in list(procs):
            p.kill()
