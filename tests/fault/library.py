"""The library workload (`--workload library`): loads through `get_or_load`, cache-aside
writes against a tiny "database", a few hot keys so several callers on one node share a load.

- `Database`: an in-process HTTP server (the source of truth). `GET /{category}/{key}`
  snapshots the value, then waits 0-100 ms before answering (so a load returns a value that a
  write may replace meanwhile: loads race invalidations), 404 when absent. Writes are in
  process (`put` / `delete`, under a lock, recorded in the history as `type: "db"`).
- `LibClient`: a client thread bound to one node. `load` = `GET /v1/test/load/{cat}/{key}`
  (the node's test hook: `get_or_load` with a loader reading the database); `dbput` /
  `dbdel` = write the database, then invalidate the key through the node (DELETE of the key
  or `POST /v1/invalidate` with the exact key), acknowledged only when both are done; `get` =
  a plain cached read of the same keys.

History records: reads are `f: "load"` (or `"get"`), writes are `f: "put"` / `"delete"`
with `via: "db"`, `db_t` (when the database took it) and `inv` (how it was invalidated);
their `status` is the invalidation's (a 2xx only when both parts succeeded).
"""

import http.server
import json
import random
import sys
import threading
import time
import urllib.parse

import workload

# Hot keys (most operations, so loads of one key on one node overlap) and a few cold ones.
HOT_KEYS = ["lib:hot:1", "lib:hot:2"]
COLD_KEYS = ["lib:cold:1", "lib:cold:2", "lib:cold:3", "lib:[x]*", "lib:ключ ü"]
KEYS = HOT_KEYS + COLD_KEYS
HOT_SHARE = 0.7
MAX_DELAY_S = 0.1


class Database:
    """The source of truth of the library workload, served over HTTP on 127.0.0.1."""

    def __init__(self, recorder, now_us=workload.now_us, seed=0):
        self.rec, self.now_us = recorder, now_us
        self.data, self.lock = {}, threading.Lock()
        self.rng, self.rng_lock = random.Random(seed), threading.Lock()
        self.server = None

    def get(self, cat, key):
        with self.lock:
            return self.data.get((cat, key))

    def put(self, cat, key, value):
        with self.lock:
            self.data[(cat, key)] = value
            t = self.now_us()
            self.rec.write({"type": "db", "op": "put", "cat": cat, "key": key,
                            "value": value, "t": t})
        return t

    def delete(self, cat, key):
        with self.lock:
            self.data.pop((cat, key), None)
            t = self.now_us()
            self.rec.write({"type": "db", "op": "delete", "cat": cat, "key": key, "t": t})
        return t

    def delay(self):
        with self.rng_lock:
            return self.rng.uniform(0.0, MAX_DELAY_S)

    def serve(self, cat, key):
        """One `GET /{cat}/{key}`: (status, body), after the delay."""
        value = self.get(cat, key)  # the snapshot: a write may land during the delay
        time.sleep(self.delay())
        if value is None:
            return 404, b"not found"
        return 200, value.encode("utf-8", "surrogateescape")

    def start(self):
        """Serves on a free 127.0.0.1 port (the OS picks it); returns the base URL."""
        db = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's naming
                parts = self.path.lstrip("/").split("/")
                if len(parts) != 2:
                    self.answer(400, b"want /{category}/{key}")
                    return
                cat, key = (urllib.parse.unquote(p, errors="surrogateescape") for p in parts)
                self.answer(*db.serve(cat, key))

            def answer(self, status, body):
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                """A node killed mid-request resets its connection: not an error of the
                run (anything else is still reported)."""
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="database",
                         daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class LibClient(workload.Client):
    """One library client thread bound to one node (see the module docstring)."""

    def __init__(self, name, node, port, recorder, rng, stop, db, timeout_s=2.0):
        super().__init__(name, node, port, recorder, rng, stop, timeout_s)
        self.db = db

    def pick_key(self):
        return self.rng.choice(HOT_KEYS if self.rng.random() < HOT_SHARE else COLD_KEYS)

    def call(self, op, method, path, body=None, headers=None):
        """Sends one request; sets `t1` and `status`/`err` on `op`; returns the body."""
        try:
            status, data = self.request(method, path, body, headers)
            op.update(t1=workload.now_us(), status=status, err=None)
            return data
        except TimeoutError:
            op.update(t1=workload.now_us(), status=None, err="timeout")
        except ConnectionRefusedError:
            op.update(t1=workload.now_us(), status=None, err="refused")
        except OSError as e:
            op.update(t1=workload.now_us(), status=None, err="conn:" + type(e).__name__)
        except Exception as e:  # noqa: BLE001 - http.client errors: recorded, not raised
            op.update(t1=workload.now_us(), status=None, err="conn:" + type(e).__name__)
        return None

    def one(self):
        rng = self.rng
        cat, key = rng.choice(workload.CATEGORIES), self.pick_key()
        op = {"type": "op", "id": self.rec.new_id(), "node": self.node, "proc": self.cname,
              "cat": cat, "key": key}
        r = rng.random()
        if r < 0.70:
            f = "load" if r < 0.60 else "get"
            op["f"] = f
            prefix = "/v1/test/load" if f == "load" else "/v1/cache"
            path = "%s/%s/%s" % (prefix, urllib.parse.quote(cat, safe=""),
                                 urllib.parse.quote(key, safe=""))
            op["t0"] = workload.now_us()
            data = self.call(op, "GET", path)
            if op["status"] == 200:
                op["result"] = data.decode("utf-8", "surrogateescape")
            elif op["status"] is not None and op["status"] >= 300 and data is not None:
                op["body"] = data[:200].decode("utf-8", "replace")
        else:
            self.cache_aside_write(op, r < 0.95)
        self.rec.write(op)
        return op

    def cache_aside_write(self, op, put):
        """Writes (`put`) or deletes `op`'s key in the database, then invalidates it through
        the node (DELETE of the key or an exact `POST /v1/invalidate`, at random); fills in
        `op` (not recorded here)."""
        cat, key = op["cat"], op["key"]
        op["via"] = "db"
        op["t0"] = workload.now_us()
        if put:
            self.counter += 1
            op.update(f="put", value=f"{key}|{self.cname}|{self.counter}")
            op["db_t"] = self.db.put(cat, key, op["value"])
        else:
            op["f"] = "delete"
            op["db_t"] = self.db.delete(cat, key)
        if self.rng.random() < 0.5:
            op["inv"] = "delete"
            data = self.call(op, "DELETE", workload.path_of(cat, key))
        else:
            op["inv"] = "exact"
            payload = json.dumps({"category": cat, "key": key}, ensure_ascii=False)
            data = self.call(op, "POST", "/v1/invalidate", payload.encode(),
                             {"content-type": "application/json"})
        if op["status"] is not None and op["status"] >= 300 and data is not None:
            op["body"] = data[:200].decode("utf-8", "replace")


def start_clients(nodes, recorder, seed, per_node, stop, db, timeout_s=2.0):
    """`nodes` maps node id -> HTTP port; returns the started library client threads."""
    threads = []
    for ni, (node, port) in enumerate(sorted(nodes.items())):
        for c in range(per_node):
            rng = random.Random(seed * 1000 + 500 + ni * 100 + c)
            t = LibClient(f"{node}l{c}", node, port, recorder, rng, stop, db, timeout_s)
            t.start()
            threads.append(t)
    return threads
