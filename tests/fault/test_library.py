"""Self-test of the library workload (library.py): the database server (404, value, the
records of its writes) and a client's cache-aside write against a fake node (acknowledged
only when the database write and the invalidation are both done)."""

import http.server
import random
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request

import library


class Rec:
    def __init__(self):
        self.lines, self.n = [], 0

    def new_id(self):
        self.n += 1
        return self.n

    def write(self, rec):
        self.lines.append(rec)


class FakeNode(http.server.BaseHTTPRequestHandler):
    """Answers invalidations with `status` and loads with the database's value."""

    protocol_version = "HTTP/1.1"
    status = 204
    seen = []

    def reply(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self):  # noqa: N802
        FakeNode.seen.append(("DELETE", self.path))
        self.reply(FakeNode.status)

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["content-length"]))
        FakeNode.seen.append(("POST", self.path, body))
        self.reply(200 if FakeNode.status == 204 else FakeNode.status, b"{}")

    def do_GET(self):  # noqa: N802
        FakeNode.seen.append(("GET", self.path))
        self.reply(404, b"{}")

    def log_message(self, *_a):
        pass


class LibraryTest(unittest.TestCase):
    def setUp(self):
        self.rec = Rec()
        self.db = library.Database(self.rec, seed=1)
        self.url = self.db.start()
        self.addCleanup(self.db.stop)
        self.node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeNode)
        self.node.daemon_threads = True
        threading.Thread(target=self.node.serve_forever, daemon=True).start()
        self.addCleanup(self.node.server_close)
        self.addCleanup(self.node.shutdown)
        FakeNode.seen, FakeNode.status = [], 204

    def test_database_serves_values_404_and_records_writes(self):
        key = "lib:[x]* ü/"
        quoted = urllib.parse.quote(key, safe="")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{self.url}/roles/{quoted}", timeout=2)
        self.assertEqual(e.exception.code, 404)
        self.db.put("roles", key, "v1")
        with urllib.request.urlopen(f"{self.url}/roles/{quoted}", timeout=2) as r:
            self.assertEqual(r.read(), b"v1")
        self.db.delete("roles", key)
        self.assertEqual([(r["op"], r.get("value")) for r in self.rec.lines],
                         [("put", "v1"), ("delete", None)])

    def client(self, seed):
        return library.LibClient("n1l0", "n1", self.node.server_address[1], self.rec,
                                 random.Random(seed), threading.Event(), self.db)

    def writes(self, client, n=60):
        ops = [client.one() for _ in range(n)]
        if client.conn:
            client.conn.close()
        return [o for o in ops if o.get("via") == "db"]

    def test_cache_aside_write_is_acked_after_database_and_invalidation(self):
        ws = self.writes(self.client(3))
        self.assertTrue(ws)
        for w in ws:
            self.assertEqual(w["status"] // 100, 2)
            self.assertLessEqual(w["t0"], w["db_t"])
            self.assertLessEqual(w["db_t"], w["t1"])
        kinds = {w["inv"] for w in ws}
        self.assertEqual(kinds, {"delete", "exact"})
        self.assertTrue(any(s[0] == "GET" and s[1].startswith("/v1/test/load/")
                            for s in FakeNode.seen))

    def test_failed_invalidation_leaves_the_write_unacknowledged(self):
        FakeNode.status = 503
        ws = self.writes(self.client(4))
        self.assertTrue(ws)
        self.assertTrue(all(w["status"] == 503 for w in ws))
        # The database still took them (a failed write may or may not have happened).
        self.assertTrue(any(r["op"] == "put" for r in self.rec.lines if r["type"] == "db"))

    def test_hot_keys_get_most_operations(self):
        c = self.client(5)
        picks = [c.pick_key() for _ in range(1000)]
        hot = sum(k in library.HOT_KEYS for k in picks)
        self.assertGreater(hot, 600)


if __name__ == "__main__":
    unittest.main()
