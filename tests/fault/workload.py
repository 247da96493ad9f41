"""Concurrent clients on every node and the history recorder.

Every operation is recorded with its invocation and completion time on one monotonic clock
(`time.monotonic_ns`, shared by all threads of the run), the node, the arguments and what
the client saw (status code, value, or the error). Values are unique (`key|client|counter`),
so a read names exactly the write it observed.
"""

import http.client
import json
import random
import threading
import time
import urllib.parse

CATEGORIES = ["roles", "general"]
# Keys with glob characters, spaces, `/`, `\` and non-ASCII: each must be handled as bytes.
KEYS = [
    "plain:1", "plain:2", "get_roles:[1, 2]", "x[1", "x]", "star*key", "q?mark",
    "brace{a,b}", "back\\slash", "space key", "ключ:ü", "日本:1", "a/b",
]
# Globs of the documented grammar (`\` escapes a glob character); each covers some KEYS.
GLOBS = ["plain:*", "get_roles:\\[*", "x*", "*key", "q\\?*", "brace\\{*", "back\\\\*",
         "ключ*", "?[!a-z]*"]


def now_us():
    return time.monotonic_ns() // 1000


class Recorder:
    """Appends JSON lines under a lock (the history file is complete even after a crash)."""

    def __init__(self, path):
        self.fh = open(path, "w", encoding="utf-8")
        self.lock = threading.Lock()
        self.next_id = 0

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def write(self, rec):
        line = json.dumps(rec, ensure_ascii=True)
        with self.lock:
            self.fh.write(line + "\n")

    def close(self):
        with self.lock:
            self.fh.flush()
            self.fh.close()


def path_of(cat, key):
    return "/v1/cache/%s/%s" % (urllib.parse.quote(cat, safe=""),
                                urllib.parse.quote(key, safe=""))


class Client(threading.Thread):
    """One client thread bound to one node: random ops at a bounded rate until stopped."""

    def __init__(self, name, node, port, recorder, rng, stop, timeout_s=2.0,
                 pause_s=(0.005, 0.03)):
        super().__init__(name=name, daemon=True)
        self.cname, self.node, self.port = name, node, port
        self.rec, self.rng, self.stop = recorder, rng, stop
        self.timeout_s, self.pause_s = timeout_s, pause_s
        self.conn, self.counter = None, 0
        self.last_headers = {}  # of the last answer, names in lower case

    def request(self, method, path, body=None, headers=None):
        """Returns (status, body) or raises OSError / http.client.HTTPException."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
        self.last_headers = {}
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
            self.last_headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, data
        except BaseException:
            self.conn.close()
            self.conn = None
            raise

    def one(self):
        rng = self.rng
        cat = rng.choice(CATEGORIES)
        key = rng.choice(KEYS)
        r = rng.random()
        op = {"type": "op", "id": self.rec.new_id(), "node": self.node, "proc": self.cname,
              "cat": cat}
        if r < 0.50:
            op.update(f="get", key=key)
            method, path, body = "GET", path_of(cat, key), None
        elif r < 0.85:
            self.counter += 1
            value = f"{key}|{self.cname}|{self.counter}"
            op.update(f="put", key=key, value=value)
            method, path, body = "PUT", path_of(cat, key), value.encode()
        elif r < 0.90:
            op.update(f="delete", key=key)
            method, path, body = "DELETE", path_of(cat, key), None
        else:
            r2 = rng.random()
            if r2 < 0.45:
                op.update(f="inv", inv="exact", key=key)
                payload = {"category": cat, "key": key}
            elif r2 < 0.85:
                pat = rng.choice(GLOBS)
                op.update(f="inv", inv="glob", pattern=pat)
                payload = {"category": cat, "pattern": pat}
            elif r2 < 0.97:
                op.update(f="inv", inv="all", pattern="*")
                payload = {"category": cat, "pattern": "*"}
            else:
                op.update(f="inv", inv="allcat", pattern="*", cat="*")
                payload = {"category": "*", "pattern": "*"}
            method, path = "POST", "/v1/invalidate"
            body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"content-type": "application/json"} if method == "POST" else {}
        if method == "PUT":
            # The client gives up after timeout_s; a write must not land after that (the
            # checker's literal rule), so it says so: the node applies it before this wall
            # time or not at all.
            deadline_ms = int((time.time() + self.timeout_s) * 1000)
            headers["x-hc-deadline-ms"] = str(deadline_ms)
        op["t0"] = now_us()
        try:
            status, data = self.request(method, path, body, headers)
            op["t1"] = now_us()
            op["status"], op["err"] = status, None
            if op["f"] == "get" and status == 200:
                op["result"] = data.decode("utf-8", "surrogateescape")
            elif status >= 300:
                op["body"] = data[:200].decode("utf-8", "replace")
        except TimeoutError:
            op.update(t1=now_us(), status=None, err="timeout")
        except ConnectionRefusedError:
            op.update(t1=now_us(), status=None, err="refused")
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
            op.update(t1=now_us(), status=None, err="reset")
        except (OSError, http.client.HTTPException) as e:
            op.update(t1=now_us(), status=None, err="conn:" + type(e).__name__)
        self.rec.write(op)
        return op

    def run(self):
        while not self.stop.is_set():
            op = self.one()
            # A refused or reset connection fails at once: back off so a dead node is not
            # hammered (the history would fill with refusals).
            extra = 0.1 if op["status"] is None else 0.0
            self.stop.wait(self.rng.uniform(*self.pause_s) + extra)
        if self.conn:
            self.conn.close()


def start_clients(nodes, recorder, seed, per_node, stop, timeout_s=2.0):
    """`nodes` maps node id -> HTTP port; returns the started threads."""
    threads = []
    for ni, (node, port) in enumerate(sorted(nodes.items())):
        for c in range(per_node):
            rng = random.Random(seed * 1000 + ni * 100 + c)
            t = Client(f"{node}c{c}", node, port, recorder, rng, stop, timeout_s)
            t.start()
            threads.append(t)
    return threads
