"""Self-test of the nemesis (nemesis.py) against fake processes: `combined` draws two faults
(never two on Redis; a node restart with a Redis outage included), every started fault (and
part) is healed, also when a part fails, and `actor_crash` crashes several category actors
of one node."""

import random
import signal
import threading
import unittest

import nemesis
import workload


class FakeRedis:
    def cmd(self, *args):
        if args[:2] == ("CONFIG", "GET"):
            return [b"client-output-buffer-limit", b"pubsub 32mb 8mb 60"]
        if args[:2] == ("CLIENT", "LIST"):
            return b""
        return 1

    def pipeline(self, commands):
        return [3] * len(commands)

    def close(self):
        pass


class FakeProcs:
    """Records what the nemesis does; `fail` names a call that raises."""

    namespace = "fc"

    def __init__(self, fail=None):
        self.nodes = {"n1": {}, "n2": {}, "n3": {}}
        self.calls, self.fail, self.lock = [], fail, threading.Lock()

    def _call(self, *call):
        with self.lock:
            self.calls.append(call)
        if call[0] == self.fail:
            raise RuntimeError(f"injected failure of {call[0]}")

    def kill(self, name):
        self._call("kill", name)

    def start_node(self, name):
        self._call("start_node", name)

    def wait_healthy(self, name):
        self._call("wait_healthy", name)

    def signal(self, name, sig):
        self._call("signal", name, sig)

    def start_redis(self):
        self._call("start_redis")

    def redis(self):
        self._call("redis")
        return FakeRedis()

    def proxy_mode(self, name, mode):
        self._call("proxy_mode", name, mode)

    def crash_actor(self, node, category):
        self._call("crash_actor", node, category)
        return True


class Events:
    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def write(self, rec):
        with self.lock:
            self.events.append(rec)


def nem(seed, procs=None):
    rec = Events()
    clock = iter(range(10**9))
    n = nemesis.Nemesis(procs or FakeProcs(), rec, random.Random(seed), lambda: next(clock),
                        lambda _m: None, sleep=lambda _s: None)
    return n, rec


def starts_and_heals(events):
    key = lambda e: (e["kind"], e["target"], e.get("part_of"))  # noqa: E731
    starts = [key(e) for e in events if e["phase"] == "start"]
    heals = [key(e) for e in events if e["phase"] == "heal"]
    return starts, heals


class CombinedPairsTest(unittest.TestCase):
    def test_includes_a_node_restart_during_a_redis_outage(self):
        # Issue #23 item 3 is fixed (the replay hold): a node killed and restarted while
        # Redis is stopped or restarted is a pair `combined` draws like any other.
        pairs = {frozenset(p) for p in nemesis.combined_pairs()}
        self.assertIn(frozenset({"node_kill", "redis_stop"}), pairs)
        self.assertIn(frozenset({"node_kill", "redis_restart"}), pairs)
        self.assertFalse(hasattr(nemesis, "UNFIXED_PAIRS"))

    def test_pairs_are_two_distinct_real_faults_never_two_on_redis(self):
        for a, b in nemesis.combined_pairs():
            self.assertNotEqual(a, b)
            for f in (a, b):
                self.assertIn(f, nemesis.FAULTS)
                self.assertNotIn(f, ("none", "combined"))
            self.assertFalse(a in nemesis.REDIS_FAULTS and b in nemesis.REDIS_FAULTS)
        # Every real fault takes part in some pair.
        used = {f for p in nemesis.combined_pairs() for f in p}
        self.assertEqual(used, set(nemesis.FAULTS) - {"none", "combined"})

    def test_new_faults_are_in_the_default_rotation(self):
        for kind in ("combined", "actor_crash"):
            self.assertIn(kind, nemesis.FAULTS)
            self.assertTrue(hasattr(nemesis.Nemesis, "_" + kind))


class CombinedRoundTest(unittest.TestCase):
    def run_combined(self, seed):
        n, rec = nem(seed)
        _, info = n.run_one("combined", 1.0)
        return rec.events, info

    def test_never_picks_an_excluded_pair_and_heals_every_part(self):
        seen = set()
        for seed in range(300):
            events, info = self.run_combined(seed)
            parts = [e for e in events if e.get("part_of") == "combined"]
            kinds = frozenset(e["kind"] for e in parts)
            self.assertEqual(len(kinds), 2, info)
            seen.add(kinds)
            starts, heals = starts_and_heals(events)
            self.assertEqual(sorted(starts), sorted(heals), f"seed {seed}: {events}")
            # The round's own events enclose its parts'.
            self.assertEqual((events[0]["kind"], events[0]["phase"]), ("combined", "start"))
            self.assertEqual((events[-1]["kind"], events[-1]["phase"]), ("combined", "heal"))
            by_kind = {e["kind"]: e["target"] for e in parts}
            if set(by_kind) <= nemesis.NODE_PROCESS_FAULTS:
                self.assertEqual(len(set(by_kind.values())), 2, "two different nodes")
        self.assertGreater(len(seen), 10, "many pairs are drawn")

    def test_node_kill_pairs_with_a_redis_outage(self):
        seen = set()
        for seed in range(600):
            events, _ = self.run_combined(seed)
            seen.add(frozenset(e["kind"] for e in events if e.get("part_of")))
        self.assertIn(frozenset({"node_kill", "redis_stop"}), seen)
        self.assertIn(frozenset({"node_kill", "redis_restart"}), seen)

    def test_pairs_come_from_the_runs_faults(self):
        procs = FakeProcs()
        only = ["combined", "node_kill", "redis_stop", "redis_restart"]
        n = nemesis.Nemesis(procs, Events(), random.Random(1), lambda: 0, lambda _m: None,
                            sleep=lambda _s: None, faults=only)
        # Two Redis faults never pair: node_kill with each of them.
        self.assertEqual({frozenset(p) for p in n.pairs},
                         {frozenset({"node_kill", "redis_stop"}),
                          frozenset({"node_kill", "redis_restart"})})
        # Faults that make no pair: every fault is paired instead.
        n = nemesis.Nemesis(procs, Events(), random.Random(1), lambda: 0, lambda _m: None,
                            sleep=lambda _s: None, faults=["combined", "redis_stop"])
        self.assertEqual(n.pairs, nemesis.combined_pairs())

    def test_a_failing_part_still_heals_both(self):
        # A part whose heal raises: the other part is still healed and the round re-raises.
        for seed in range(100):
            procs = FakeProcs(fail="start_redis")
            n, rec = nem(seed, procs)
            try:
                n.run_one("combined", 1.0)
            except RuntimeError:
                pass
            starts, heals = starts_and_heals(rec.events)
            self.assertEqual(sorted(starts), sorted(heals), f"seed {seed}")

    def test_same_seed_same_round(self):
        a, _ = self.run_combined(7)
        b, _ = self.run_combined(7)
        strip = lambda evs: sorted((e["kind"], e["phase"], e["target"]) for e in evs)  # noqa
        self.assertEqual(strip(a), strip(b))


class RotationTest(unittest.TestCase):
    def test_every_fault_once_per_cycle(self):
        for seed in range(20):
            kinds = nemesis.rotation(random.Random(seed), nemesis.FAULTS)
            n = len(nemesis.FAULTS)
            for _ in range(3):
                self.assertEqual(sorted(next(kinds) for _ in range(n)), sorted(nemesis.FAULTS))


class ActorCrashTest(unittest.TestCase):
    def test_crashes_several_category_actors_of_one_node(self):
        for seed in range(50):
            procs = FakeProcs()
            n, rec = nem(seed, procs)
            target, info = n.run_one("actor_crash", 2.0)
            crashes = [c for c in procs.calls if c[0] == "crash_actor"]
            self.assertGreaterEqual(len(crashes), 2)
            self.assertEqual({c[1] for c in crashes}, {target})
            self.assertTrue({c[2] for c in crashes} <= set(workload.CATEGORIES))
            self.assertEqual(info["crashed"], [c[2] for c in crashes])
            starts, heals = starts_and_heals(rec.events)
            self.assertEqual(starts, heals)

    def test_every_single_fault_is_healed(self):
        for kind in nemesis.FAULTS:
            procs = FakeProcs()
            n, rec = nem(1, procs)
            n.run_one(kind, 1.0)
            starts, heals = starts_and_heals(rec.events)
            self.assertEqual(sorted(starts), sorted(heals), kind)
            stops = [c for c in procs.calls if c[:1] == ("signal",) and c[2] == signal.SIGSTOP]
            conts = [c for c in procs.calls if c[:1] == ("signal",) and c[2] == signal.SIGCONT]
            self.assertEqual(len(stops), len(conts), kind)


if __name__ == "__main__":
    unittest.main()
