"""Self-test of the near-cache workload (nearcache.py) and of the checker's rules for its
reads: fail-safe (`X-Cache: STALE`) answers and "not found" answers judged against B on
hand-made histories; the failing database; a client's records against a fake node; the
counters summed across a restart; a run whose features never triggered is a problem."""

import http.server
import json
import random
import threading
import unittest
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import nearcache
from test_checker import MS, H
from test_library import Rec


def near_load(h, t0, t1, result, xc, key="k", node="n2", status=200, absent=False):
    """A read through the node's origin route, as NearClient records it."""
    op = h.load(t0, t1, result, key=key, cat="near", node=node, status=status)
    op.update(hook="origin", xc=xc)
    if absent:
        op["absent"] = True
    return op


class NearCheckerTest(unittest.TestCase):
    def test_stale_answer_beyond_the_bound_fails(self):
        h = H()
        h.db_put(0, 10, "a", cat="near")
        h.db_put(40, 50, "b", cat="near")  # acked at 50
        near_load(h, 200, 210, "a", "STALE")  # 150 ms after: beyond B = 50
        res = h.check()
        self.assertEqual([v["read"]["id"] for v in res["violations"]], [3])
        self.assertEqual(res["violations"][0]["age_us"], 150 * MS)

    def test_stale_answer_within_the_bound_passes(self):
        h = H()
        h.db_put(0, 10, "a", cat="near")
        h.db_put(40, 50, "b", cat="near")
        near_load(h, 90, 100, "a", "STALE")  # 40 ms after the ack: within B
        near_load(h, 20, 30, "a", "STALE")  # before the second write
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["loads"]["stale"], 1)

    def test_not_found_after_an_acked_put_beyond_the_bound_fails(self):
        h = H()
        h.db_put(0, 10, "a", cat="near")  # never deleted
        near_load(h, 100, 101, None, "HIT", status=404, absent=True)  # 90 ms after
        res = h.check()
        self.assertEqual(len(res["violations"]), 1)
        v = res["violations"][0]
        self.assertEqual((v["age_us"], v["by"]["id"], v["write"]), (90 * MS, 1, None))
        self.assertEqual(res["loads"]["absent_violations"], 1)

    def test_not_found_within_the_bound_or_after_a_delete_passes(self):
        h = H()
        near_load(h, 0, 5, None, "MISS", status=404, absent=True)  # never written
        h.db_put(10, 20, "a", cat="near")
        near_load(h, 60, 61, None, "HIT", status=404, absent=True)  # 40 ms: within B
        h.db_delete(100, 110, cat="near")
        near_load(h, 500, 501, None, "HIT", status=404, absent=True)  # deleted since
        h.db_put(600, 700, "b", cat="near")
        h.db_delete(650, 660, cat="near")  # concurrent with the put: either order
        near_load(h, 900, 901, None, "HIT", status=404, absent=True)
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["loads"]["absent"], 4)
        self.assertEqual(res["loads"]["absent_stale"], 1)

    def test_not_found_after_a_failed_delete_and_an_acked_put(self):
        h = H()
        h.db_put(0, 10, "a", cat="near")
        h.db_delete(20, 30, cat="near", status=503)  # may have happened
        near_load(h, 500, 501, None, "HIT", status=404, absent=True)  # allowed
        h.db_put(600, 610, "b", cat="near")
        near_load(h, 700, 701, None, "HIT", status=404, absent=True)  # 90 ms after b
        res = h.check()
        self.assertEqual([v["read"]["id"] for v in res["violations"]], [5])
        self.assertEqual(res["violations"][0]["write"]["id"], 2)

    def test_a_404_without_the_absent_flag_is_a_miss(self):
        h = H()
        h.db_put(0, 10, "a", cat="near")
        near_load(h, 100, 101, None, None, status=404)  # e.g. unknown_category: not judged
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["rows"]["warmup"]["miss"], 1)


class FakeNode(http.server.BaseHTTPRequestHandler):
    """Answers loads of `answers[key]` = (status, x-cache, body), invalidations 204."""

    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body in one segment (no delayed-ACK stalls)
    answers = {}

    def reply(self, status, body=b"", xc=None):
        self.send_response(status)
        if xc:
            self.send_header("x-cache", xc)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        key = urllib.parse.unquote(self.path.rsplit("/", 1)[1])
        status, xc, body = FakeNode.answers.get(key, (404, "HIT", b'{"error":"not_found"}'))
        self.reply(status, body, xc)

    def do_DELETE(self):  # noqa: N802
        self.reply(204)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        self.reply(200, b"{}")

    def log_message(self, *_a):
        pass


class NearWorkloadTest(unittest.TestCase):
    def setUp(self):
        self.rec = Rec()
        self.t = [0.0]
        self.db = nearcache.FaultyDatabase(self.rec, seed=1, clock=lambda: self.t[0],
                                           sleep=lambda s: None)
        self.url = self.db.start()
        self.addCleanup(self.db.stop)

    def get(self, cat, key):
        try:
            with urllib.request.urlopen(f"{self.url}/{cat}/{urllib.parse.quote(key)}",
                                        timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def test_outages_alternate_and_are_longer_than_the_ttl(self):
        self.assertIsNone(nearcache.outage(0))
        self.assertEqual(nearcache.outage(nearcache.OUTAGE_AT_S + 0.1), "down")
        self.assertEqual(nearcache.outage(nearcache.OUTAGE_PERIOD_S + nearcache.OUTAGE_AT_S),
                         "slow")
        self.assertGreater(nearcache.OUTAGE_S, 4)  # ttl_secs of CATEGORY_TOML
        self.assertIn("ttl_secs = 4", nearcache.CATEGORY_TOML)

    def test_database_fails_only_the_near_category(self):
        self.db.put("near", "k", "v1")
        self.db.put("roles", "k", "r1")
        self.t[0] = nearcache.OUTAGE_AT_S + 1  # a "down" outage
        self.assertEqual(self.get("near", "k")[0], 500)
        self.assertEqual(self.get("roles", "k"), (200, b"r1"))
        self.t[0] = 0.0
        seen = Counter(self.get("near", "k")[0] for _ in range(200))
        self.assertGreater(seen[500], 0)
        self.assertGreater(seen[200], 150)
        self.assertIn(self.get("near", "nothing")[0], (404, 500))
        self.assertGreater(self.db.answers["slow"], 0)
        self.assertEqual(sum(self.db.answers.values()), 202)

    def test_client_records_the_label_and_absent_answers(self):
        FakeNode.answers = {"near:q1": (200, "STALE", b"near:q1|x|1"),
                            "near:q2": (502, None, b'{"error":"loader_failed"}'),
                            "near:q3": (404, None, b'{"error":"unknown_category"}')}
        node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeNode)
        node.daemon_threads = True
        threading.Thread(target=node.serve_forever, daemon=True).start()
        self.addCleanup(node.server_close)
        self.addCleanup(node.shutdown)
        c = nearcache.NearClient("n1r0", "n1", node.server_address[1], self.rec,
                                 random.Random(1), threading.Event(), self.db)
        got = {}
        for key in ("near:q1", "near:q2", "near:q3", "near:absent:1"):
            op = {"type": "op", "id": 1, "node": "n1", "cat": "near", "key": key, "f": "load"}
            c.read(op)
            got[key] = op
        ops = [c.one() for _ in range(300)]
        c.conn.close()
        self.assertEqual((got["near:q1"]["xc"], got["near:q1"]["result"]),
                         ("STALE", "near:q1|x|1"))
        self.assertNotIn("absent", got["near:q2"])
        self.assertNotIn("absent", got["near:q3"])
        self.assertTrue(got["near:absent:1"]["absent"])
        self.assertEqual(got["near:absent:1"]["xc"], "HIT")
        writes = [o for o in ops if o.get("via") == "db"]
        self.assertTrue(writes and all(o["status"] // 100 == 2 for o in writes))
        self.assertFalse(any(o["key"] in nearcache.ABSENT_KEYS for o in writes))

    def test_counters_are_summed_across_a_restart(self):
        seq = iter([{"refreshes_won": 5}, {"refreshes_won": 9}, {"refreshes_won": 2}, None,
                    {"refreshes_won": 3}])
        s = nearcache.StatsSampler({"n1": 1}, threading.Event(), fetch=lambda p: next(seq))
        for _ in range(5):
            s.sample()
        self.assertEqual(s.totals["refreshes_won"], 9 + 2 + 1)

    def test_a_run_whose_features_never_triggered_has_problems(self):
        ops = [{"hook": "origin", "status": 200, "xc": "HIT"},
               {"hook": "origin", "status": 404, "absent": True, "xc": "HIT"}]
        lines, problems = nearcache.summary(ops, {"refreshes_won": 0}, {}, 120)
        self.assertIn("HIT 1", lines[0])
        self.assertIn("HIT 404 1", lines[0])
        self.assertEqual(len(problems), 2)  # no STALE, no refresh
        ops.append({"hook": "origin", "status": 200, "xc": "STALE"})
        self.assertEqual(nearcache.summary(ops, {"refreshes_won": 1}, {}, 120)[1], [])
        self.assertEqual(nearcache.summary([], {}, {}, 30)[1], [])  # too short to judge


if __name__ == "__main__":
    unittest.main()
