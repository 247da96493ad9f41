"""The near-cache workload (`--workload nearcache`, issue #26): reads through the node's
origin route `GET /v1/load/near/{key}` (refresh-ahead, fail-safe, negative caching, TTL
jitter, warm-up of the category `near`) against a database that fails, while cache-aside
writes race the reloads.

- `CATEGORY_TOML`: the category every node of the run gets (ttl 4 s, refresh after 1 s,
  fail-safe 30 s, soft timeout 150 ms, hard 1000 ms, "not found" cached 2 s, jitter 0.25,
  warm-up of 16 keys sampled every second).
- `FaultyDatabase`: `library.Database` (the source of truth, `HC_ORIGIN_URL` of the nodes)
  that, for the category `near` only, answers some reads 500 or slower than the soft
  timeout, and has outages (every `OUTAGE_PERIOD_S`, `OUTAGE_S` long, longer than the TTL so
  cached entries expire during it: all 500, or all slow). A slow answer takes its snapshot
  first, so it races writes. Absent keys answer 404.
- `NearClient`: reads (`f: "load"`, `hook: "origin"`, `xc` = the answer's `X-Cache`,
  `absent: true` for a 404 `not_found`) and cache-aside writes (`via: "db"`, as the library
  workload's). Quiet keys are written rarely (so they stay cached, refresh and fall back to
  fail-safe), busy keys often (so reloads race invalidations), absent keys never.
- `StatsSampler`: sums the nodes' `/v1/stats` counters across restarts.
- `summary`: X-Cache label counts, the database's answers, the counters; `problems` names
  the features that never triggered (the run fails then: a mode that triggers nothing
  proves nothing).
"""

import json
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import library
import workload

CATEGORY = "near"
CATEGORY_TOML = f"""
[categories.{CATEGORY}]
ttl_secs = 4
max_entries = 1000
ttl_jitter = 0.25
refresh_after_secs = 1
negative_ttl_secs = 2
fail_safe_max_age_secs = 30
load_soft_timeout_ms = 150
load_timeout_ms = 1000
warm_up_keys = 16
warm_up_sample_ms = 1000
"""
QUIET_KEYS = [f"near:q{i}" for i in range(14)] + ["near:[q]*", "near:ключ ü"]
BUSY_KEYS = ["near:busy:1", "near:busy:2"]
ABSENT_KEYS = ["near:absent:1", "near:absent:2"]
WRITE_SHARE = 0.05       # of a client's operations
BUSY_WRITE_SHARE = 0.85  # of the writes
PUT_SHARE = 0.8          # of the writes (the rest delete)
READ_SHARES = ((QUIET_KEYS, 0.58), (BUSY_KEYS, 0.30), (ABSENT_KEYS, 0.12))
ERROR_RATE, SLOW_RATE = 0.08, 0.08
SLOW_S = (0.2, 0.6)      # above load_soft_timeout_ms, below load_timeout_ms
OUTAGE_PERIOD_S, OUTAGE_AT_S, OUTAGE_S = 15.0, 8.0, 5.0
COUNTERS = ("refreshes_started", "refreshes_won", "refreshes_lost", "refreshes_failed",
            "refreshes_discarded", "fail_safe_hits", "negative_hits", "warmed", "loads")


def outage(t):
    """The outage at `t` s after the database started: None, "down" (500) or "slow"."""
    period, phase = divmod(t, OUTAGE_PERIOD_S)
    if not OUTAGE_AT_S <= phase < OUTAGE_AT_S + OUTAGE_S:
        return None
    return "down" if int(period) % 2 == 0 else "slow"


class FaultyDatabase(library.Database):
    """`library.Database` with failures on the category `near` (see the module docstring)."""

    def __init__(self, recorder, now_us=workload.now_us, seed=0, clock=time.monotonic,
                 sleep=time.sleep):
        super().__init__(recorder, now_us, seed)
        self.clock, self.sleep, self.t_start = clock, sleep, clock()
        self.answers = Counter()

    def start(self):
        self.t_start = self.clock()
        return super().start()

    def fault(self):
        """None, "error" or "slow" for one read of `near`, outages first."""
        o = outage(self.clock() - self.t_start)
        if o is not None:
            return "error" if o == "down" else "slow"
        with self.rng_lock:
            r = self.rng.random()
        return "error" if r < ERROR_RATE else "slow" if r < ERROR_RATE + SLOW_RATE else None

    def serve(self, cat, key):
        if cat != CATEGORY:
            return super().serve(cat, key)
        kind = self.fault()
        value = self.get(cat, key)  # the snapshot, before any wait
        if kind == "slow":
            with self.rng_lock:
                wait = self.rng.uniform(*SLOW_S)
        else:
            wait = self.delay()
        self.sleep(wait)
        with self.lock:
            self.answers[kind or ("ok" if value is not None else "404")] += 1
        if kind == "error":
            return 500, b"injected failure"
        if value is None:
            return 404, b"not found"
        return 200, value.encode("utf-8", "surrogateescape")


def load_path(key):
    return "/v1/load/%s/%s" % (CATEGORY, urllib.parse.quote(key, safe=""))


class NearClient(library.LibClient):
    """One near-cache client thread bound to one node (see the module docstring)."""

    def __init__(self, name, node, port, recorder, rng, stop, db, timeout_s=2.0):
        super().__init__(name, node, port, recorder, rng, stop, db, timeout_s)
        self.pause_s = (0.01, 0.05)

    def pick_read_key(self):
        r = self.rng.random()
        for keys, share in READ_SHARES:
            if r < share:
                return self.rng.choice(keys)
            r -= share
        return self.rng.choice(READ_SHARES[-1][0])

    def pick_write_key(self):
        busy = self.rng.random() < BUSY_WRITE_SHARE
        return self.rng.choice(BUSY_KEYS if busy else QUIET_KEYS)

    def one(self):
        op = {"type": "op", "id": self.rec.new_id(), "node": self.node, "proc": self.cname,
              "cat": CATEGORY}
        if self.rng.random() < WRITE_SHARE:
            op["key"] = self.pick_write_key()
            self.cache_aside_write(op, self.rng.random() < PUT_SHARE)
        else:
            op.update(key=self.pick_read_key(), f="load", hook="origin")
            self.read(op)
        self.rec.write(op)
        return op

    def read(self, op):
        op["t0"] = workload.now_us()
        data = self.call(op, "GET", load_path(op["key"]))
        st = op["status"]
        if st is None:
            return
        op["xc"] = self.last_headers.get("x-cache")
        if st == 200:
            op["result"] = data.decode("utf-8", "surrogateescape")
            return
        if st >= 300 and data is not None:
            op["body"] = data[:200].decode("utf-8", "replace")
        if st == 404:
            try:
                code = json.loads(data or b"{}").get("error")
            except (ValueError, AttributeError):
                code = None
            if code == "not_found":
                op["absent"] = True  # a read of "no value": the checker judges it


def seed(db, recorder, port, stop, timeout_s=2.0):
    """Writes every quiet and busy key once (recorded cache-aside writes through node
    `port`), so reads find values from the start; returns the ops."""
    c = NearClient("seed", "seed", port, recorder, random.Random(0), stop, db, timeout_s)
    ops = []
    for key in QUIET_KEYS + BUSY_KEYS:
        op = {"type": "op", "id": recorder.new_id(), "node": "seed", "proc": "seed",
              "cat": CATEGORY, "key": key}
        c.cache_aside_write(op, True)
        recorder.write(op)
        ops.append(op)
    if c.conn:
        c.conn.close()
    return ops


def start_clients(nodes, recorder, seed_, per_node, stop, db, timeout_s=2.0):
    """`nodes` maps node id -> HTTP port; returns the started near-cache client threads."""
    threads = []
    for ni, (node, port) in enumerate(sorted(nodes.items())):
        for c in range(per_node):
            rng = random.Random(seed_ * 1000 + 700 + ni * 100 + c)
            t = NearClient(f"{node}r{c}", node, port, recorder, rng, stop, db, timeout_s)
            t.start()
            threads.append(t)
    return threads


def fetch_counters(port, timeout=1.0):
    """The node's `/v1/stats` counters, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats",
                                    timeout=timeout) as r:
            return json.loads(r.read()).get("counters", {})
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


class StatsSampler(threading.Thread):
    """Polls every node's counters; `totals` sums them over the run. A counter that went
    down means the node restarted: its new value all counts (what the old process counted
    since the last poll is lost, so the totals are lower bounds)."""

    def __init__(self, ports, stop, period_s=1.0, fetch=fetch_counters):
        super().__init__(name="stats", daemon=True)
        self.ports, self.stop, self.period_s, self.fetch = dict(ports), stop, period_s, fetch
        self.last, self.totals, self.lock = {}, Counter(), threading.Lock()

    def sample(self):
        for node, port in sorted(self.ports.items()):
            now = self.fetch(port)
            if now is None:
                continue
            with self.lock:
                prev = self.last.get(node, {})
                for k in COUNTERS:
                    v, p = int(now.get(k, 0)), int(prev.get(k, 0))
                    self.totals[k] += v - p if v >= p else v
                self.last[node] = now

    def run(self):
        while not self.stop.wait(self.period_s):
            self.sample()


def summary(ops, totals, db_answers, duration_s, min_duration_s=60):
    """(lines to print, problems): X-Cache labels of the near reads, the database's answers,
    the counters; problems = the features that never triggered in a run of at least
    `min_duration_s`."""
    labels = Counter()
    for op in ops:
        if op.get("hook") != "origin":
            continue
        st = op.get("status")
        if st == 200:
            labels[op.get("xc") or "none"] += 1
        elif st == 404 and op.get("absent"):
            labels[f'{op.get("xc") or "none"} 404'] += 1
        elif st is None:
            labels[f'error {op.get("err")}'] += 1
        else:
            labels[f"http {st}"] += 1
    lines = [
        "near-cache reads by answer: " + (", ".join(
            f"{k} {n}" for k, n in sorted(labels.items())) or "none"),
        "near-cache database answers: " + (", ".join(
            f"{k} {n}" for k, n in sorted(db_answers.items())) or "none"),
        "near-cache node counters (summed over the run): " + ", ".join(
            f"{k} {totals.get(k, 0)}" for k in COUNTERS),
    ]
    problems = []
    if duration_s >= min_duration_s:
        if not labels["STALE"]:
            problems.append("no fail-safe answer (X-Cache: STALE)")
        if not totals.get("refreshes_won"):
            problems.append("no refresh-ahead reload ran (refreshes_won 0)")
        if not labels["HIT 404"]:
            problems.append("no cached \"not found\" answer (X-Cache: HIT on a 404)")
    return lines, problems
