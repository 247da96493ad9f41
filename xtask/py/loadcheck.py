#!/usr/bin/env python3
"""Bounded load + staleness checker for a hybrid-cache cluster (stdlib only).

  loadcheck.py load  --url http://127.0.0.1:8080 [--duration S] [--max-requests N] ...
  loadcheck.py wait-state --url http://127.0.0.1:18081 --target n2 --state dead [--timeout S]
  loadcheck.py wait-health --url URL [--status 200] [--timeout S]
  loadcheck.py prom-check --url http://127.0.0.1:19090 --targets 3 --query EXPR [--timeout S]

`load`: worker threads send PUT / GET / DELETE / exact-key invalidations for
their own disjoint key set through the balancer (a new connection per request,
so consecutive requests for one key land on different nodes). Values carry a
per-key sequence number. For each key the checker keeps the *floor*: the
sequence number of the last mutating request that was acknowledged (2xx)
before a read started. A read is STALE when it returns a value whose sequence
number is below the floor (an older write than one already acknowledged, or a
value that an acknowledged delete/invalidate removed). A 404 is a miss, which a
cache may answer at any time (eviction, Redis restart without persistence); it
is counted, not failed. Transport errors and 5xx count as errors.

Exit status: 0 = no stale reads, 1 = stale reads, 2 = usage / could not run,
3 = too many errors (--max-error-rate) or no successful request at all.
The last stdout line is a JSON summary.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse


_last = threading.local()  # which node / level answered this thread's last request


def request(base, method, path, body=None, timeout=3.0):
    """One request on a fresh connection: (status, body bytes) or raises OSError."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        _last.node = resp.getheader("x-node")
        _last.cache = resp.getheader("x-cache")
        return resp.status, body
    finally:
        conn.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {
            "requests": 0, "errors": 0, "stale_reads": 0, "reads": 0, "hits": 0,
            "misses": 0, "writes_acked": 0, "deletes_acked": 0,
            "invalidations_acked": 0, "unknown_outcome": 0, "foreign_values": 0,
            "lagged_reads": 0,
        }
        self.stale_examples = []
        self.error_examples = {}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.c[k] += v

    def error(self, what):
        with self.lock:
            self.c["errors"] += 1
            self.error_examples[what] = self.error_examples.get(what, 0) + 1

    def stale(self, ex):
        with self.lock:
            self.c["stale_reads"] += 1
            if len(self.stale_examples) < 20:
                self.stale_examples.append(ex)


def worker(args, wid, keys, deadline, budget, stats):
    rng = random.Random(args.seed * 1000 + wid)
    seq = {k: 0 for k in keys}      # last sequence number issued per key
    floor = {k: 0 for k in keys}    # last acknowledged mutation per key
    acked_at = {k: 0.0 for k in keys}  # monotonic time of that acknowledgement
    cat = args.category
    while time.monotonic() < deadline:
        with budget["lock"]:
            if budget["left"] <= 0:
                return
            budget["left"] -= 1
        key = rng.choice(keys)
        path = f"/v1/cache/{cat}/{key}"
        r = rng.random()
        try:
            if r < args.write_ratio:
                seq[key] += 1
                n = seq[key]
                st, _ = request(args.url, "PUT", path + f"?ttl={args.ttl}",
                                body=f"{args.run}|{key}|{n}".encode(), timeout=args.timeout)
                stats.add(requests=1)
                if 200 <= st < 300:
                    floor[key] = n
                    acked_at[key] = time.monotonic()
                    stats.add(writes_acked=1)
                else:
                    stats.add(unknown_outcome=1)
                    stats.error(f"PUT {st}")
            elif r < args.write_ratio + args.delete_ratio:
                seq[key] += 1
                n = seq[key]
                if rng.random() < 0.5:
                    st, _ = request(args.url, "DELETE", path, timeout=args.timeout)
                    kind = "deletes_acked"
                else:
                    st, _ = request(args.url, "POST", "/v1/invalidate",
                                    body=json.dumps({"category": cat, "pattern": key}).encode(),
                                    timeout=args.timeout)
                    kind = "invalidations_acked"
                stats.add(requests=1)
                if 200 <= st < 300:
                    floor[key] = n
                    acked_at[key] = time.monotonic()
                    stats.add(**{kind: 1})
                else:
                    stats.add(unknown_outcome=1)
                    stats.error(f"DEL/INV {st}")
            else:
                f = floor[key]
                t0 = time.time()
                since_ack_ms = (time.monotonic() - acked_at[key]) * 1000
                st, body = request(args.url, "GET", path, timeout=args.timeout)
                stats.add(requests=1, reads=1)
                if st == 200:
                    stats.add(hits=1)
                    try:
                        run, k, n = body.decode().split("|")
                        n = int(n)
                    except ValueError:
                        stats.add(foreign_values=1)
                        stats.stale({"key": key, "floor": f, "got": body[:80].decode("latin-1"),
                                     "why": "unparseable value", "t": t0})
                        continue
                    if run != args.run or k != key:
                        stats.stale({"key": key, "floor": f, "got": body.decode(),
                                     "why": "value of another key/run", "t": t0})
                    elif n < f and since_ack_ms < args.grace_ms:
                        stats.add(lagged_reads=1)
                    elif n < f:
                        stats.stale({"key": key, "floor": f, "got": n, "t": t0,
                                     "ms_since_ack": round(since_ack_ms, 1),
                                     "node": getattr(_last, "node", None),
                                     "x_cache": getattr(_last, "cache", None)})
                elif st == 404:
                    stats.add(misses=1)
                else:
                    stats.error(f"GET {st}")
        except (OSError, http.client.HTTPException) as e:
            stats.add(requests=1)
            if r < args.write_ratio + args.delete_ratio:
                stats.add(unknown_outcome=1)
            stats.error(type(e).__name__)
            time.sleep(0.02)


def cmd_load(args):
    args.run = args.run or f"r{int(time.time())}{random.randint(0, 9999)}"
    nkeys = args.keys
    keys = [f"{args.prefix}{args.run}-k{i}" for i in range(nkeys)]
    threads = max(1, min(args.concurrency, nkeys))
    parts = [keys[i::threads] for i in range(threads)]
    stats = Stats()
    budget = {"left": args.max_requests, "lock": threading.Lock()}
    start = time.monotonic()
    deadline = start + args.duration
    ts = [threading.Thread(target=worker, args=(args, i, parts[i], deadline, budget, stats),
                           daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(args.duration + 4 * args.timeout + 5)
    elapsed = time.monotonic() - start
    c = dict(stats.c)
    c["elapsed_s"] = round(elapsed, 2)
    c["rps"] = round(c["requests"] / elapsed, 1) if elapsed > 0 else 0
    ok = c["requests"] - c["errors"]
    c["error_rate"] = round(c["errors"] / c["requests"], 4) if c["requests"] else 1.0
    summary = {"label": args.label, **c, "error_kinds": stats.error_examples,
               "stale_examples": stats.stale_examples}
    print(f"[loadcheck] {args.label}: requests={c['requests']} errors={c['errors']} "
          f"stale_reads={c['stale_reads']} lagged_reads={c['lagged_reads']} reads={c['reads']} hits={c['hits']} "
          f"misses={c['misses']} acked_writes={c['writes_acked']} "
          f"acked_deletes={c['deletes_acked']} acked_invalidations={c['invalidations_acked']} "
          f"rps={c['rps']} elapsed={c['elapsed_s']}s", file=sys.stderr)
    if stats.error_examples:
        print(f"[loadcheck] error kinds: {stats.error_examples}", file=sys.stderr)
    for ex in stats.stale_examples:
        print(f"[loadcheck] STALE {ex}", file=sys.stderr)
    print(json.dumps(summary))
    if c["stale_reads"]:
        return 1
    if ok <= 0 or (args.max_error_rate is not None and c["error_rate"] > args.max_error_rate):
        return 3
    return 0


def cluster_state(url, target, timeout=2.0):
    try:
        st, body = request(url, "GET", "/v1/cluster/stats", timeout=timeout)
        if st != 200:
            return f"http-{st}"
        d = json.loads(body)
        for n in d.get("nodes", []):
            if n.get("node_id") == target:
                return n.get("state", "unknown")
        return "absent"
    except (OSError, http.client.HTTPException, ValueError):
        return "unreachable"


def cmd_wait_state(args):
    """Poll URL's /v1/cluster/stats until TARGET has STATE; print seconds waited."""
    start = time.monotonic()
    wanted = set(args.state.split(","))
    last = None
    while time.monotonic() - start < args.timeout:
        last = cluster_state(args.url, args.target)
        if last in wanted:
            el = time.monotonic() - start
            print(f"{el:.3f}")
            return 0
        time.sleep(args.interval)
    print(f"[loadcheck] {args.url}: {args.target} still '{last}' after {args.timeout}s",
          file=sys.stderr)
    print("timeout")
    return 1


def cmd_wait_health(args):
    start = time.monotonic()
    last = None
    while time.monotonic() - start < args.timeout:
        try:
            st, body = request(args.url, "GET", "/health", timeout=2.0)
            last = st
            if st == args.status:
                print(f"{time.monotonic() - start:.3f}")
                return 0
        except (OSError, http.client.HTTPException) as e:
            last = type(e).__name__
        time.sleep(args.interval)
    print(f"[loadcheck] {args.url}/health: last {last}, wanted {args.status}", file=sys.stderr)
    print("timeout")
    return 1


def lb_status(stats_url, server, backend):
    try:
        st, body = request(stats_url, "GET", "/;csv", timeout=2.0)
        if st != 200:
            return f"http-{st}"
        lines = body.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == backend and row.get("svname") == server:
                return row.get("status", "?")
        return "absent"
    except (OSError, http.client.HTTPException, IndexError):
        return "unreachable"


def cmd_lb_state(args):
    """Poll HAProxy's CSV stats until SERVER is routed to (--up) or not (--down)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < args.timeout:
        last = lb_status(args.stats, args.server, args.backend)
        routed = last.startswith("UP") and "going down" not in last
        if (args.want == "up" and last == "UP") or (args.want == "down" and not routed
                                                     and last not in ("unreachable", "absent")):
            print(f"{time.monotonic() - start:.3f}")
            return 0
        time.sleep(0.05)
    print(f"[loadcheck] balancer: {args.server} status '{last}', wanted {args.want}", file=sys.stderr)
    print("timeout")
    return 1


def prom_get(base, path):
    st, body = request(base, "GET", path, timeout=3.0)
    if st != 200:
        raise ValueError(f"{path}: HTTP {st}")
    d = json.loads(body)
    if d.get("status") != "success":
        raise ValueError(f"{path}: {d.get('error')}")
    return d["data"]


def cmd_prom_check(args):
    """A real Prometheus scraping the cluster: wait until it has exactly TARGETS active
    targets, every one `up`; then until QUERY returns a sample with a finite value; then
    check that the alert rules (RULE) are loaded. Prints one line per check."""
    start = time.monotonic()

    def wait(what, probe):
        last = None
        while time.monotonic() - start < args.timeout:
            try:
                ok, last = probe()
                if ok:
                    print(f"{what} after {time.monotonic() - start:.1f}s: {last}")
                    return True
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(1.0)
        print(f"[loadcheck] prometheus: {what}: not after {args.timeout}s (last: {last})",
              file=sys.stderr)
        return False

    def targets():
        active = prom_get(args.url, "/api/v1/targets?state=active")["activeTargets"]
        health = sorted(f"{t['labels'].get('instance')}={t['health']}" for t in active)
        return len(active) == args.targets and all(t["health"] == "up" for t in active), health

    def query():
        q = urllib.parse.quote(args.query)
        res = prom_get(args.url, f"/api/v1/query?query={q}")["result"]
        vals = [float(r["value"][1]) for r in res]
        finite = [v for v in vals if v == v and v not in (float("inf"), float("-inf"))]
        return bool(finite), f"{args.query} = {finite or vals}"

    def rules():
        groups = prom_get(args.url, "/api/v1/rules")["groups"]
        names = sorted(r["name"] for g in groups for r in g["rules"])
        return args.rule in names, f"{len(names)} rules loaded"

    if not wait(f"{args.targets} targets up", targets):
        return 1
    if not wait("histogram query has data", query):
        return 1
    if not wait(f"alert rule {args.rule} loaded", rules):
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("load")
    l.add_argument("--url", default="http://127.0.0.1:8080")
    l.add_argument("--duration", type=float, default=20.0, help="seconds (upper bound)")
    l.add_argument("--max-requests", type=int, default=20000, help="total request budget")
    l.add_argument("--keys", type=int, default=64)
    l.add_argument("--concurrency", type=int, default=8)
    l.add_argument("--category", default="general")
    l.add_argument("--ttl", type=int, default=600)
    l.add_argument("--write-ratio", type=float, default=0.3)
    l.add_argument("--delete-ratio", type=float, default=0.05)
    l.add_argument("--timeout", type=float, default=3.0)
    l.add_argument("--prefix", default="lc-")
    l.add_argument("--run", default="")
    l.add_argument("--seed", type=int, default=1)
    l.add_argument("--label", default="load")
    l.add_argument("--max-error-rate", type=float, default=None)
    l.add_argument("--grace-ms", type=float, default=0.0,
                   help="an older value read less than this long after the newer write was "
                        "acknowledged counts as lagged_reads, not stale (default 0: strict)")
    w = sub.add_parser("wait-state")
    w.add_argument("--url", required=True)
    w.add_argument("--target", required=True)
    w.add_argument("--state", required=True, help="alive|suspect|dead (comma-separated: any)")
    w.add_argument("--timeout", type=float, default=30.0)
    w.add_argument("--interval", type=float, default=0.05)
    h = sub.add_parser("wait-health")
    h.add_argument("--url", required=True)
    h.add_argument("--status", type=int, default=200)
    h.add_argument("--timeout", type=float, default=30.0)
    h.add_argument("--interval", type=float, default=0.1)
    b = sub.add_parser("lb-state")
    b.add_argument("--stats", default="http://127.0.0.1:18404")
    b.add_argument("--backend", default="be_nodes")
    b.add_argument("--server", required=True)
    b.add_argument("--want", choices=["up", "down"], required=True)
    b.add_argument("--timeout", type=float, default=30.0)
    pc = sub.add_parser("prom-check")
    pc.add_argument("--url", default="http://127.0.0.1:19090")
    pc.add_argument("--targets", type=int, default=3)
    pc.add_argument("--query", required=True, help="PromQL that must return a finite sample")
    pc.add_argument("--rule", default="HybridCachePeerDead", help="an alert rule that must be loaded")
    pc.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    if args.cmd == "prom-check":
        return cmd_prom_check(args)
    if args.cmd == "load":
        return cmd_load(args)
    if args.cmd == "lb-state":
        return cmd_lb_state(args)
    if args.cmd == "wait-state":
        return cmd_wait_state(args)
    return cmd_wait_health(args)


if __name__ == "__main__":
    sys.exit(main())
