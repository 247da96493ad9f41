#!/usr/bin/env python3
"""The cluster page (GET /ui) in a real headless Chromium, against a real 3-node cluster.

Starts n1..n3 on free loopback ports (L1 only, gossip over QUIC with --peers), then, each
time loading the page served by n1 in `chromium --headless --dump-dom` (the page's own JS
runs: polls, renders, acts on its URL hash):
  1. the page lists the 3 nodes, all alive;
  2. an invalidation driven from the page (its invalidate form, submitted by its own code
     from the URL hash, with the API token) empties the keys on every node;
  3. n3 is killed (SIGKILL): the page shows it dead;
  4. a screenshot of that page goes to docs/ui.png (--screenshot PATH to change).
Before the cluster, the page (assets/ui.html, the file the binary embeds) is loaded from a
scripted stub server whose /v1/cluster/stats lists n2 with stats, then in `missing`, then
with the same counters again: n2's invalidations/s must read 0.0, not its whole counter.
Also scrapes the nodes with a real Prometheus (when the `prometheus` binary exists):
targets up and a histogram query returning data.
Exits non-zero on any failed check. Every process started here is stopped by pid.

Usage: cargo xtask ui-test, or python3 xtask/py/ui_test.py [--bin target/debug/hybrid-cache] [--screenshot docs/ui.png]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "ui-test-token"
PROCS = []


def log(msg):
    print(f"[ui-test] {msg}", file=sys.stderr, flush=True)


def http(method, url, body=None, token=None, timeout=5):
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what, timeout, f):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if f():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"[ui-test] FAIL: timed out waiting for {what}")


def start(cmd, logfile, env=None):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(logfile, "w"), env=env)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("HC_") or k.startswith("REDIS_"))}
    env["RUST_LOG"] = "info"
    env["HC_API_TOKEN"] = TOKEN
    # Gossip without TLS (loopback) authenticates frames with a shared secret.
    env["HC_CLUSTER_SECRET"] = "ui-test-cluster-secret"
    return env


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("[ui-test] FAIL: no chromium (apt-get install chromium)")


def browse(url, profile, budget_ms=4000, screenshot=None):
    """Loads url in headless Chromium, lets its JS run for budget_ms of virtual time, and
    returns the resulting DOM (or writes a screenshot)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           f"--virtual-time-budget={budget_ms}", "--window-size=1400,1000"]
    cmd += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    out = subprocess.run(cmd + [url], capture_output=True, timeout=90, text=True)
    if out.returncode != 0:
        raise SystemExit(f"[ui-test] FAIL: chromium exited {out.returncode}: {out.stderr[-2000:]}")
    return out.stdout


def node_states(dom):
    return dict(re.findall(r'<tr data-node="([^"]+)" data-state="([^"]+)"', dom))


def check(cond, msg):
    if not cond:
        raise SystemExit(f"[ui-test] FAIL: {msg}")
    log(f"ok: {msg}")


def prometheus_check(nodes, tmp):
    prom = shutil.which("prometheus")
    if not prom:
        log("SKIP prometheus scrape check: no prometheus binary (apt-get install prometheus)")
        return
    port = free_port()
    targets = ", ".join(f'"127.0.0.1:{n["http"]}"' for n in nodes)
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                f"rule_files:\n  - {os.path.join(ROOT, 'deploy/prometheus/alerts.yml')}\n"
                "scrape_configs:\n  - job_name: hybrid-cache\n"
                f"    static_configs:\n      - targets: [{targets}]\n")
    start([prom, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/tsdb",
           f"--web.listen-address=127.0.0.1:{port}"], os.path.join(tmp, "prometheus.log"))
    base = f"http://127.0.0.1:{port}"

    def targets_up():
        _, b = http("GET", f"{base}/api/v1/targets")
        active = json.loads(b)["data"]["activeTargets"]
        return len(active) == len(nodes) and all(t["health"] == "up" for t in active)

    wait_until("Prometheus sees every node up", 60, targets_up)
    check(True, f"Prometheus scrapes {len(nodes)} nodes, all up")
    q = urllib.parse.quote('sum by (route) (hc_http_request_duration_seconds_count{route="/v1/cluster/stats"})')

    def histogram_has_data():
        _, b = http("GET", f"{base}/api/v1/query?query={q}")
        res = json.loads(b)["data"]["result"]
        return res and float(res[0]["value"][1]) > 0

    wait_until("a histogram query returning data", 30, histogram_has_data)
    check(True, "Prometheus query on hc_http_request_duration_seconds returns data")
    _, b = http("GET", f"{base}/api/v1/rules")
    groups = json.loads(b)["data"]["groups"]
    check(any(r["name"] == "HybridCachePeerDead" for g in groups for r in g["rules"]),
          "Prometheus loaded the alert rules")


def rate_after_missing_check(tmp):
    """A node listed in `missing` must not reset its invalidations/s baseline: the page's
    3rd poll sees n2's counters unchanged after a poll where n2 did not answer, so its rate
    is 0.0 (the bug showed its whole counter, 5.0). Later polls fail (invalid JSON), so the
    page keeps what the 3rd poll rendered."""
    with open(os.path.join(ROOT, "assets", "ui.html"), "rb") as f:
        page = f.read()
    n2_stats = {"node_id": "n2", "l1_caches": {},
                "counters": {"invalidations_sent": 2, "invalidations_received": 3}}
    polls = []

    def cluster_stats():
        k = len(polls)
        polls.append(k)
        if k >= 3:
            return b"not json"
        missing = k == 1
        n2 = {"node_id": "n2", "state": "alive", "last_seen_ms": 10, "http_addr": "127.0.0.1:1",
              "stats": None if missing else n2_stats}
        n1 = {"node_id": "n1", "state": "alive", "last_seen_ms": 0, "http_addr": "127.0.0.1:2",
              "stats": {"node_id": "n1", "l1_caches": {}, "counters": {}}}
        return json.dumps({"self": "n1", "nodes": [n1, n2], "totals": {"nodes_alive": 2},
                           "missing": ["n2"] if missing else []}).encode()

    class Stub(BaseHTTPRequestHandler):
        def do_GET(self):
            route = {
                "/ui": lambda: (page, "text/html; charset=utf-8"),
                "/v1/cluster/stats": lambda: (cluster_stats(), "application/json"),
                "/v1/stats": lambda: (b'{"node_id": "n1", "l1_caches": {}}', "application/json"),
                "/metrics": lambda: (b"", "text/plain"),
            }.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            body, ctype = route()
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = browse(f"http://127.0.0.1:{server.server_address[1]}/ui",
                     os.path.join(tmp, "profile-stub"), budget_ms=8000)
    finally:
        server.shutdown()
        server.server_close()
    m = re.search(r'<tr data-node="n2"[^>]*>.*?<td class="num rate">([^<]*)</td>', dom, re.S)
    rate = m.group(1) if m else None
    check(len(polls) >= 4 and rate == "0.0",
          f"n2 listed in `missing` for one poll keeps its rate baseline: invalidations/s "
          f"{rate!r} after {len(polls)} polls (want '0.0' after at least 4)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--screenshot", default=os.path.join(ROOT, "docs", "ui.png"))
    args = ap.parse_args()
    binary = args.bin
    if not binary:
        subprocess.run(["cargo", "build", "-q", "--bin", "hybrid-cache"], cwd=ROOT, check=True)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        binary = os.path.join(target, "debug", "hybrid-cache")

    tmp = tempfile.mkdtemp(prefix="hc-ui-test-")
    try:
        rate_after_missing_check(tmp)
        nodes = [{"id": f"n{i}", "http": free_port(), "gossip": free_port()}
                 for i in (1, 2, 3)]
        for n in nodes:
            peers = ",".join(f"127.0.0.1:{m['gossip']}" for m in nodes if m is not n)
            n["proc"] = start([binary, "node", "--node-id", n["id"],
                               "--http", f"127.0.0.1:{n['http']}",
                               "--gossip", f"127.0.0.1:{n['gossip']}", "--peers", peers],
                              os.path.join(tmp, f"{n['id']}.log"), env=clean_env())
            n["url"] = f"http://127.0.0.1:{n['http']}"
        n1 = nodes[0]["url"]

        def all_alive():
            _, b = http("GET", f"{n1}/v1/cluster/stats")
            cs = json.loads(b)
            return sum(1 for n in cs["nodes"] if n["state"] == "alive") == 3

        wait_until("n1 to see 3 alive nodes", 60, all_alive)
        log(f"cluster up: {', '.join(n['id'] + '=' + n['url'] for n in nodes)}")

        # 1. the page lists the 3 nodes
        dom = browse(f"{n1}/ui", os.path.join(tmp, "profile1"))
        states = node_states(dom)
        check(states == {"n1": "alive", "n2": "alive", "n3": "alive"},
              f"page lists the 3 nodes alive: {states}")
        check('data-category="permissions"' in dom, "page shows per-category rows")

        # 2. an invalidation from the page empties the keys on every node
        # One key per node, in that node's L1 (no Redis: each node holds its own). A node's
        # first change can make its peers flush their L1 (a new origin), so write until all
        # three keys are cached at the same time.
        def key_url(n):
            return f"{n['url']}/v1/cache/general/ui-test:{n['id']}"

        def all_cached():
            missing = [n for n in nodes if http("GET", key_url(n))[0] != 200]
            for n in missing:
                code, _ = http("PUT", key_url(n), body=b"v", token=TOKEN)
                check(code == 204, f"PUT ui-test:{n['id']} on {n['id']}")
            if missing:
                time.sleep(0.5)
                return False
            return True

        wait_until("a key cached on every node", 20, all_cached)
        check(True, "ui-test:n1..n3 cached on n1..n3")
        frag = urllib.parse.urlencode({"invalidate": "", "category": "general",
                                       "pattern": "ui-test:*", "token": TOKEN})
        dom = browse(f"{n1}/ui#{frag}", os.path.join(tmp, "profile2"))
        m = re.search(r'<pre class="result" id="invalidate-result"([^>]*)>([^<]*)<', dom)
        check(m is not None and 'data-outcome="ok"' in m.group(1)
              and "general/ui-test:*: 1 entries here" in m.group(2),
              f"page's invalidate form succeeded: {m.group(2) if m else dom[-500:]}")

        def gone_everywhere():
            return all(http("GET", f"{n['url']}/v1/cache/general/ui-test:{n['id']}")[0] == 404
                       for n in nodes)

        wait_until("the invalidated keys to be gone on every node", 10, gone_everywhere)
        check(True, "keys invalidated from the page are gone on n1, n2 and n3")
        # An exact key (glob characters literal) through the same form.
        for k in ("exact*key", "exactXkey"):
            code, _ = http("PUT", f"{n1}/v1/cache/general/{k}", body=b"v", token=TOKEN)
            check(code == 204 and http("GET", f"{n1}/v1/cache/general/{k}")[0] == 200,
                  f"{k} cached on n1")
        frag = urllib.parse.urlencode({"invalidate": "", "category": "general",
                                       "pattern": "exact*key", "exact": "1", "token": TOKEN})
        dom = browse(f"{n1}/ui#{frag}", os.path.join(tmp, "profile2b"))
        check('data-outcome="ok"' in dom and http("GET", f"{n1}/v1/cache/general/exact*key")[0] == 404,
              "page's exact-key invalidation removed the key")
        check(http("GET", f"{n1}/v1/cache/general/exactXkey")[0] == 200,
              "... and only that key (`*` taken literally, exactXkey kept)")
        # Without the token the page reports the refusal.
        frag = urllib.parse.urlencode({"invalidate": "", "category": "general", "pattern": "x",
                                       "token": "wrong"})
        dom = browse(f"{n1}/ui#{frag}", os.path.join(tmp, "profile3"))
        check('data-status="401"' in dom, "page shows 401 for a wrong token")

        prometheus_check(nodes, tmp)

        # 3. kill n3: the page shows it dead
        nodes[2]["proc"].send_signal(signal.SIGKILL)
        nodes[2]["proc"].wait()

        def n3_dead():
            _, b = http("GET", f"{n1}/v1/cluster/stats")
            return any(n["node_id"] == "n3" and n["state"] == "dead"
                       for n in json.loads(b)["nodes"])

        wait_until("n1 to report n3 dead", 30, n3_dead)
        dom = browse(f"{n1}/ui", os.path.join(tmp, "profile4"))
        states = node_states(dom)
        check(states.get("n3") == "dead" and states.get("n1") == "alive" and states.get("n2") == "alive",
              f"page shows killed n3 dead: {states}")

        # 4. screenshot (some traffic first, so the numbers are not all zero)
        for i in range(20):
            http("PUT", f"{n1}/v1/cache/permissions/get_user_permissions:{i}", b"[]", TOKEN)
            http("GET", f"{n1}/v1/cache/permissions/get_user_permissions:{i}")
            http("GET", f"{nodes[1]['url']}/v1/cache/permissions/get_user_permissions:{i}")
        os.makedirs(os.path.dirname(args.screenshot), exist_ok=True)
        frag = urllib.parse.urlencode({"lookup": "", "category": "permissions",
                                       "key": "get_user_permissions:1"})
        browse(f"{n1}/ui#{frag}", os.path.join(tmp, "profile5"), screenshot=args.screenshot)
        check(os.path.getsize(args.screenshot) > 10_000, f"screenshot written to {args.screenshot}")
        log("PASS")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
