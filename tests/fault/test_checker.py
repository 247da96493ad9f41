"""Self-test of the offline checker on hand-made histories (python3 -m unittest discover tests/fault)."""

import io
import json
import os
import tempfile
import unittest

import checker

MS = 1000  # history times are microseconds


class H:
    """Builds a history: times in ms, results as the client saw them."""

    def __init__(self):
        self.ops, self.faults, self.db, self.n = [], [], [], 0

    def _op(self, f, t0, t1, node="n1", status=204, **kw):
        self.n += 1
        op = {"type": "op", "id": self.n, "f": f, "node": node, "t0": t0 * MS, "t1": t1 * MS,
              "status": status, "err": None if status else "timeout"}
        op.update(kw)
        self.ops.append(op)
        return op

    def put(self, t0, t1, value, key="k", cat="general", **kw):
        return self._op("put", t0, t1, cat=cat, key=key, value=value, **kw)

    def delete(self, t0, t1, key="k", cat="general", **kw):
        return self._op("delete", t0, t1, cat=cat, key=key, **kw)

    def inv_key(self, t0, t1, key="k", cat="general", **kw):
        return self._op("inv", t0, t1, cat=cat, inv="exact", key=key, **kw)

    def inv_glob(self, t0, t1, pattern, cat="general", **kw):
        return self._op("inv", t0, t1, cat=cat, inv="glob", pattern=pattern, **kw)

    def get(self, t0, t1, result, key="k", cat="general", node="n2", status=200):
        return self._op("get", t0, t1, node=node, status=status, cat=cat, key=key,
                        result=result if status == 200 else None)

    def load(self, t0, t1, result, key="k", cat="general", node="n2", status=200):
        """A read through get_or_load (the library workload's test hook)."""
        return self._op("load", t0, t1, node=node, status=status, cat=cat, key=key,
                        result=result if status == 200 else None)

    def db_put(self, t0, t1, value, key="k", cat="general", status=204, **kw):
        """A cache-aside write: the database at t0 (recorded), the invalidation acked at t1."""
        self.db.append({"type": "db", "op": "put", "cat": cat, "key": key, "value": value,
                        "t": t0 * MS})
        return self._op("put", t0, t1, cat=cat, key=key, value=value, via="db", status=status,
                        **kw)

    def db_delete(self, t0, t1, key="k", cat="general", status=204):
        self.db.append({"type": "db", "op": "delete", "cat": cat, "key": key, "t": t0 * MS})
        return self._op("delete", t0, t1, cat=cat, key=key, via="db", status=status)

    def check(self, bound_ms=50, strict=(), linger_ms=0):
        return checker.check(self.ops, bound_ms, strict, linger_ms, self.faults, self.db)


def stale(res):
    return sum(sum(r["stale"].values()) for r in res["rows"].values())


class CheckerTest(unittest.TestCase):
    def test_fresh_read_is_ok(self):
        h = H()
        h.put(0, 10, "a")
        h.get(20, 21, "a")
        h.put(30, 40, "b")
        h.get(200, 201, "b")
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(stale(res), 0)
        self.assertEqual(res["corruptions"], [])

    def test_stale_read_beyond_bound_is_detected_with_its_age(self):
        h = H()
        h.put(0, 10, "a")
        h.put(20, 30, "b", node="n3")
        h.get(130, 131, "a")  # b acked at 30: read at 130 is 100 ms old
        res = h.check(bound_ms=50)
        self.assertEqual(len(res["violations"]), 1)
        self.assertEqual(res["violations"][0]["age_us"], 100 * MS)
        self.assertEqual(res["rows"]["warmup"]["stale"]["le_1s"], 0)
        self.assertEqual(res["rows"]["warmup"]["stale"]["gt_1s"], 0)
        self.assertEqual(res["rows"]["warmup"]["stale"]["le_1s"] + res["rows"]["warmup"]["stale"]["le_2b"], 1)

    def test_stale_within_bound_is_allowed_but_counted(self):
        h = H()
        h.put(0, 10, "a")
        h.put(20, 30, "b")
        h.get(70, 71, "a")  # 40 ms after b's ack, bound 50
        res = h.check(bound_ms=50)
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["rows"]["warmup"]["stale"]["le_b"], 1)
        self.assertEqual(res["rows"]["warmup"]["max_age_us"], 40 * MS)

    def test_overlapping_writes_may_be_read_in_either_order(self):
        h = H()
        h.put(0, 100, "a")
        h.put(50, 60, "b")  # invoked before a completed: a may be ordered after b
        h.get(500, 501, "a")
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(stale(res), 0)

    def test_failed_write_supplies_a_value_but_never_makes_one_stale(self):
        h = H()
        h.put(0, 10, "a")
        h.put(20, 2020, "lost", status=None)  # timed out: may or may not have happened
        h.get(3000, 3001, "a")
        h.get(3002, 3003, "lost")
        h.put(3100, 3110, "c", status=503)
        h.get(4000, 4001, "lost")
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["corruptions"], [])
        self.assertEqual(res["rows"]["warmup"]["errors"]["put:timeout"], 1)
        self.assertEqual(res["rows"]["warmup"]["errors"]["put:http_503"], 1)
        # ...but a value a failed write supplied goes stale once an acked change follows it.
        h.put(5000, 5010, "d")
        h.get(6000, 6001, "lost")
        res = h.check()
        self.assertEqual(len(res["violations"]), 1)
        self.assertEqual(res["violations"][0]["age_us"], 990 * MS)
        # A linger window lets a late effect of the failed write through.
        self.assertEqual(h.check(linger_ms=10_000)["violations"], [])

    def test_exact_invalidation_makes_the_old_value_stale(self):
        h = H()
        h.put(0, 10, "a", key="x[1")
        h.inv_key(20, 30, key="x[1")
        h.get(200, 201, "a", key="x[1")
        res = h.check()
        self.assertEqual(len(res["violations"]), 1)
        self.assertEqual(res["violations"][0]["age_us"], 170 * MS)

    def test_exact_invalidation_of_another_key_does_not(self):
        h = H()
        h.put(0, 10, "a", key="x[1")
        h.inv_key(20, 30, key="x1")
        h.inv_glob(20, 30, "y*")
        h.get(200, 201, "a", key="x[1")
        self.assertEqual(h.check()["violations"], [])

    def test_glob_and_star_invalidations(self):
        h = H()
        h.put(0, 10, "a", key="roles:[1, 2]")
        h.put(0, 10, "b", key="q?mark")
        h.put(0, 10, "c", key="ключ 1", cat="roles")
        h.inv_glob(20, 30, "roles:\\[*")  # escaped `[`: a literal prefix
        h.inv_glob(40, 50, "*", cat="roles")
        h.get(500, 501, "a", key="roles:[1, 2]")
        h.get(500, 501, "b", key="q?mark")  # not covered by either
        h.get(500, 501, "c", key="ключ 1", cat="roles")
        res = h.check()
        got = sorted((v["read"]["key"], v["age_us"]) for v in res["violations"])
        self.assertEqual(got, [("roles:[1, 2]", 470 * MS), ("ключ 1", 450 * MS)])
        # all categories
        h.put(600, 610, "d", key="q?mark")
        h.inv_glob(620, 630, "*", cat="*")
        h.get(1000, 1001, "d", key="q?mark")
        self.assertEqual(len(h.check()["violations"]), 3)

    def test_failed_invalidation_does_not_make_stale(self):
        h = H()
        h.put(0, 10, "a", key="x[1")
        h.inv_key(20, 30, key="x[1", status=400)
        h.get(200, 201, "a", key="x[1")
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["rows"]["warmup"]["errors"]["inv:http_400"], 1)

    def test_delete_makes_stale_and_misses_are_allowed(self):
        h = H()
        h.put(0, 10, "a")
        h.delete(20, 30)
        h.get(100, 101, None, status=404)
        h.get(110, 111, None, status=503)
        h.get(1500, 1501, "a")
        res = h.check()
        self.assertEqual(len(res["violations"]), 1)
        self.assertEqual(res["violations"][0]["age_us"], 1470 * MS)
        self.assertEqual(res["rows"]["warmup"]["stale"]["gt_1s"], 1)
        self.assertEqual(res["rows"]["warmup"]["miss"], 1)
        self.assertEqual(res["rows"]["warmup"]["unavailable"], 1)

    def test_corruption(self):
        h = H()
        h.put(0, 10, "a", key="k1")
        h.get(20, 21, "zzz", key="k1")  # never written
        h.get(20, 21, "a", key="k2")  # written to another key
        h.get(30, 31, "late", key="k1")  # written only after the read completed
        h.put(40, 50, "late", key="k1")
        res = h.check()
        self.assertEqual(len(res["corruptions"]), 3)
        self.assertEqual(res["rows"]["warmup"]["corrupt"], 3)

    def test_strict_categories_have_bound_zero(self):
        h = H()
        h.put(0, 10, "a", cat="roles")
        h.put(20, 30, "b", cat="roles")
        h.get(31, 32, "a", cat="roles")  # 1 ms after the ack
        h.put(0, 10, "c")
        h.put(20, 30, "d")
        h.get(31, 32, "c")  # bounded: within 50 ms
        res = h.check(bound_ms=50, strict=["roles"])
        self.assertEqual([v["read"]["cat"] for v in res["violations"]], ["roles"])
        self.assertEqual(res["violations"][0]["age_us"], 1 * MS)
        self.assertEqual(h.check(bound_ms=50)["violations"], [])

    def test_loaded_read_older_than_an_acked_cache_aside_write_is_a_violation(self):
        h = H()
        h.db_put(0, 10, "a")
        h.load(20, 30, "a")  # fresh
        h.db_put(40, 50, "b")  # database written, invalidation acked at 50
        h.load(90, 95, "a")  # 40 ms later: within B
        h.load(200, 210, "a", node="n3")  # 150 ms later: beyond B
        h.load(300, 310, "b")
        res = h.check()
        self.assertEqual([v["read"]["id"] for v in res["violations"]], [5])
        self.assertEqual(res["violations"][0]["age_us"], 150 * MS)
        self.assertEqual(res["loads"]["invoked"], 4)
        self.assertEqual(res["loads"]["stale"], 2)
        self.assertEqual(res["loads"]["violations"], 1)
        # Strict: any age is a violation.
        h2 = H()
        h2.db_put(0, 10, "a", cat="roles")
        h2.db_put(20, 30, "b", cat="roles")
        h2.load(31, 40, "a", cat="roles")
        self.assertEqual(len(h2.check(strict=["roles"])["violations"]), 1)

    def test_cache_aside_write_whose_invalidation_failed_never_makes_stale(self):
        h = H()
        h.db_put(0, 10, "a")
        h.db_put(20, 30, "b", status=503)  # in the database, but not acknowledged
        h.load(500, 510, "a")  # allowed: the write was not acknowledged
        h.load(520, 530, "b")  # allowed: it is in the database
        res = h.check()
        self.assertEqual(res["violations"], [])
        self.assertEqual(res["corruptions"], [])

    def test_loaded_read_after_a_cache_aside_delete_and_loader_misses(self):
        h = H()
        h.db_put(0, 10, "a")
        h.db_delete(20, 30)
        h.load(40, 140, None, status=404)  # the database has none: a miss
        h.load(40, 50, None, status=502)  # the loader failed: an error, allowed
        h.load(1000, 1001, "a")
        res = h.check()
        self.assertEqual(len(res["violations"]), 1)
        self.assertEqual(res["rows"]["warmup"]["miss"], 1)
        self.assertEqual(res["rows"]["warmup"]["errors"]["load:http_502"], 1)

    def test_an_invalidation_of_a_database_key_does_not_make_its_value_stale(self):
        h = H()
        h.db_put(0, 10, "a", key="lib:1")
        h.inv_glob(20, 30, "*")  # an HTTP client's `*` (--workload mixed)
        h.load(500, 510, "a", key="lib:1")  # reloaded from the database: the same value
        h.put(0, 10, "x", key="k")  # an HTTP key: the same `*` makes its value stale
        h.get(500, 510, "x", key="k")
        res = h.check()
        self.assertEqual([v["read"]["key"] for v in res["violations"]], ["k"])

    def test_loaded_value_the_database_never_held_is_corrupt(self):
        h = H()
        h.db_put(0, 10, "a")
        h.put(20, 30, "b")  # an HTTP PUT: in the cache, never in the database
        h.load(40, 50, "b")
        h.get(40, 50, "b")  # a plain read of it is fine
        res = h.check()
        self.assertEqual([c["reason"] for c in res["corruptions"]],
                         ["loaded, but never in the database"])

    def test_ops_are_attributed_to_the_fault_active_at_invocation(self):
        h = H()
        h.faults.append({"type": "fault", "kind": "redis_stop", "phase": "start", "t": 100 * MS})
        h.put(0, 10, "a")
        h.put(20, 30, "b")
        h.get(150, 151, "a")
        res = h.check()
        self.assertEqual(res["rows"]["redis_stop"]["violations"], 1)
        self.assertEqual(res["rows"]["warmup"]["ops"], 2)
        self.assertEqual(res["rows"]["warmup"]["violations"], 0)

    def test_parts_of_a_combined_round_belong_to_it(self):
        h = H()
        for kind, t, part in (("combined", 100, None), ("node_stop", 101, "combined"),
                              ("redis_stop", 600, "combined")):
            h.faults.append({"type": "fault", "kind": kind, "phase": "start", "t": t * MS,
                             **({"part_of": part} if part else {})})
        h.put(0, 10, "a")
        h.put(20, 30, "b")
        h.get(700, 701, "a")
        res = h.check()
        self.assertEqual(res["rows"]["combined"]["rounds"], 1)
        self.assertEqual(res["rows"]["combined"]["violations"], 1)
        self.assertNotIn("redis_stop", res["rows"])
        self.assertNotIn("node_stop", res["rows"])

    def test_glob_grammar(self):
        m = checker.glob_match
        self.assertTrue(m("a*", "a[1"))
        self.assertTrue(m("x\\[*", "x[1"))
        self.assertFalse(m("x\\[*", "x1"))
        self.assertTrue(m("q?m", "q?m"))
        self.assertTrue(m("[!a]b", "cb"))
        self.assertFalse(m("[!a]b", "ab"))
        self.assertTrue(m("[a-c]", "b"))
        self.assertTrue(m("{a,b}", "{a,b}"))  # no alternation in the grammar
        self.assertTrue(m("back\\\\*", "back\\slash"))

    def test_main_reads_jsonl_renders_and_exits_nonzero_on_violation(self):
        h = H()
        h.put(0, 10, "a")
        h.put(20, 30, "b")
        h.get(1130, 1131, "a")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "h.jsonl")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"type": "meta", "bound_ms": 50, "strict": []}) + "\n")
                for op in h.ops:
                    fh.write(json.dumps(op) + "\n")
            out = io.StringIO()
            import contextlib
            with contextlib.redirect_stdout(out):
                rc = checker.main([path])
            self.assertEqual(rc, 1)
            self.assertIn("age 1100.0 ms", out.getvalue())
            with contextlib.redirect_stdout(io.StringIO()):
                self.assertEqual(checker.main([path, "--bound-ms", "2000"]), 0)


if __name__ == "__main__":
    unittest.main()
