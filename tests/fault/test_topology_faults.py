"""Self-test of the persistent-Redis, Sentinel and Redis Cluster faults (topology_faults.py)
against fake processes, of the Sentinel configuration, of the cluster's view parsing
(cluster.py), and of which faults each mode runs (run.py)."""

import contextlib
import io
import signal
import unittest

import cluster
import run
import sentinel
import test_nemesis
from test_nemesis import FakeProcs, nem, starts_and_heals


class FakeRedis(test_nemesis.FakeRedis):
    def __init__(self, procs):
        self.procs = procs

    def cmd(self, *args):
        self.procs._call("redis_cmd", *args)
        if args == ("INFO", "persistence"):
            self.procs.rewrites -= 1
            busy = 1 if self.procs.rewrites > 0 else 0
            return f"# Persistence\r\naof_rewrite_in_progress:{busy}\r\n" \
                   f"aof_rewrite_scheduled:0\r\n".encode()
        if args == ("DBSIZE",):
            return 7
        return "OK"


class FakeTopology(FakeProcs):
    """A Sentinel topology (r0 primary) and a persistent Redis, as far as the faults see."""

    def __init__(self, fail=None, persistence="aof", failover_to="r1"):
        super().__init__(fail)
        self.persistence, self.failover_to, self.rewrites = persistence, failover_to, 3

    def redis(self):
        self._call("redis")
        return FakeRedis(self)

    def primary(self):
        self._call("primary")
        return "r0"

    def wait_failover(self, old, timeout):
        self._call("wait_failover", old)
        return self.failover_to, 1.5

    def start_server(self, name, replica_of=None):
        self._call("start_server", name, replica_of)

    def wait_settled(self):
        self._call("wait_settled")
        return 0.5


class FakeCluster(FakeProcs):
    """A Redis Cluster (primaries r0..r2, replicas r3..r5; r0 holds the bus), as far as the
    faults see. `failover` False: a paused primary keeps its slots."""

    REPLICAS = {"r0": "r3", "r1": "r4", "r2": "r5"}

    def __init__(self, fail=None, failover=True):
        super().__init__(fail)
        self.failover, self.failed = failover, set()

    def primaries(self):
        self._call("primaries")
        return sorted((set(self.REPLICAS) - self.failed)
                      | {self.REPLICAS[p] for p in self.failed})

    def replica_of(self, primary):
        return self.REPLICAS[primary]

    def bus_primary(self):
        return "r0"

    def pause(self, name):
        self._call("pause", name)

    def resume(self, name):
        self._call("resume", name)

    def wait_failover(self, old, replica, timeout):
        self._call("wait_failover", old, replica)
        if self.failover:
            self.failed.add(old)
        return replica, 2.0

    def start_server(self, name):
        self._call("start_server", name)

    def wait_settled(self):
        self._call("wait_settled")
        return 0.3


def names(procs):
    return [c[0] for c in procs.calls]


class PersistFaultTest(unittest.TestCase):
    def test_aof_rewrite_finishes_before_the_kill_and_redis_restarts_with_its_data(self):
        procs = FakeTopology(persistence="aof")
        n, rec = nem(1, procs)
        _, info = n.run_one("redis_restart_persist", 2.0)
        cmds = [c[1:] for c in procs.calls if c[0] == "redis_cmd"]
        self.assertIn(("BGREWRITEAOF",), cmds)
        seq = names(procs)
        last_info = max(i for i, c in enumerate(procs.calls) if c[1:] == ("INFO", "persistence"))
        self.assertLess(last_info, seq.index("kill"))
        self.assertEqual(procs.rewrites, 0)  # it waited until the rewrite was done
        self.assertLess(seq.index("kill"), seq.index("start_redis"))
        self.assertEqual(info, {"saved": "aof", "keys_before": 7, "keys_after": 7})
        self.assertEqual(*starts_and_heals(rec.events))

    def test_rdb_saves_a_hold_before_the_kill(self):
        procs = FakeTopology(persistence="rdb")
        n, _ = nem(1, procs)
        n.sleep = lambda s: procs._call("sleep", s)
        n.run_one("redis_restart_persist", 2.0)
        seq = [c[0] if c[0] != "redis_cmd" else c[1] for c in procs.calls]
        self.assertLess(seq.index("SAVE"), seq.index("kill"))
        self.assertIn(("sleep", 2.0), procs.calls[seq.index("SAVE"):seq.index("kill")])
        self.assertNotIn("BGREWRITEAOF", seq)

    def test_refused_without_persistence(self):
        procs = FakeTopology(persistence=None)
        n, rec = nem(1, procs)
        with self.assertRaises(RuntimeError):
            n.run_one("redis_restart_persist", 2.0)
        self.assertNotIn("kill", names(procs))
        self.assertEqual(*starts_and_heals(rec.events))


class SentinelFaultTest(unittest.TestCase):
    def test_primary_kill_restarts_the_old_primary_as_a_replica_of_the_new(self):
        procs = FakeTopology()
        n, rec = nem(1, procs)
        _, info = n.run_one("primary_kill", 2.0)
        self.assertIn(("kill", "r0"), procs.calls)
        self.assertIn(("start_server", "r0", "r1"), procs.calls)
        seq = names(procs)
        self.assertLess(seq.index("kill"), seq.index("wait_failover"))
        self.assertLess(seq.index("start_server"), seq.index("wait_settled"))
        self.assertEqual((info["old"], info["new"]), ("r0", "r1"))
        self.assertEqual(*starts_and_heals(rec.events))

    def test_primary_pause_stops_the_primary_past_the_failover_and_resumes_it(self):
        procs = FakeTopology()
        slept = []
        n, _ = nem(1, procs)
        n.sleep = slept.append
        n.run_one("primary_pause", 1.0)
        self.assertEqual([c for c in procs.calls if c[0] == "signal"],
                         [("signal", "r0", signal.SIGSTOP), ("signal", "r0", signal.SIGCONT)])
        # Held at least PAUSE_MIN_S in all (failover wait + sleep), past down-after.
        self.assertGreaterEqual(1.5 + sum(slept), run.tf.PAUSE_MIN_S)

    def test_primary_pause_resumes_even_when_the_failover_wait_fails(self):
        procs = FakeTopology(fail="wait_failover")
        n, rec = nem(1, procs)
        with self.assertRaises(RuntimeError):
            n.run_one("primary_pause", 1.0)
        self.assertIn(("signal", "r0", signal.SIGCONT), procs.calls)
        self.assertEqual(*starts_and_heals(rec.events))

    def test_primary_cut_cuts_the_sentinels_source_only_and_heals(self):
        for fail in (None, "wait_failover"):
            procs = FakeTopology(fail=fail)
            n, rec = nem(1, procs)
            try:
                n.run_one("primary_cut", 1.0)
            except RuntimeError:
                self.assertEqual(fail, "wait_failover")
            modes = [c[1:] for c in procs.calls if c[0] == "proxy_mode"]
            self.assertEqual(modes, [("r0", f"cut={sentinel.SENTINEL_SOURCE}"), ("r0", "pass")])
            self.assertEqual(*starts_and_heals(rec.events))

    def test_sentinel_config_uses_the_cut_source_address_and_the_primarys_proxy(self):
        conf = sentinel.sentinel_conf(26001, "/tmp/x", 41234)
        self.assertIn("bind-source-addr 127.0.0.2\n", conf)
        self.assertIn(f"sentinel monitor {sentinel.MASTER} 127.0.0.1 41234 2\n", conf)
        self.assertIn("bind 127.0.0.1\n", conf)
        self.assertIn("sentinel announce-ip 127.0.0.1\n", conf)


class ClusterFaultTest(unittest.TestCase):
    def test_primary_kill_restarts_the_killed_server_after_the_failover(self):
        for seed in range(6):
            procs = FakeCluster()
            n, rec = nem(seed, procs)
            _, info = n.run_one("cluster_primary_kill", 2.5)
            old = info["old"]
            self.assertIn(old, FakeCluster.REPLICAS)
            self.assertEqual(info["new"], FakeCluster.REPLICAS[old])
            self.assertEqual(info["bus"], old == "r0")
            seq = [c for c in procs.calls if c[0] != "primaries"]
            self.assertEqual([c[0] for c in seq],
                             ["kill", "wait_failover", "start_server", "wait_settled"])
            self.assertEqual(seq[0], ("kill", old))
            self.assertEqual(seq[2], ("start_server", old))
            self.assertEqual(*starts_and_heals(rec.events))

    def test_primary_kill_restarts_the_server_even_when_the_failover_wait_fails(self):
        procs = FakeCluster(fail="wait_failover")
        n, rec = nem(1, procs)
        with self.assertRaises(RuntimeError):
            n.run_one("cluster_primary_kill", 2.5)
        killed = [c[1] for c in procs.calls if c[0] == "kill"]
        self.assertEqual([c[1] for c in procs.calls if c[0] == "start_server"], killed)
        self.assertEqual(*starts_and_heals(rec.events))

    def test_primary_pause_draws_every_length_and_always_resumes(self):
        seen = set()
        for seed in range(30):
            procs = FakeCluster()
            slept = []
            n, _ = nem(seed, procs)
            n.sleep = slept.append
            _, info = n.run_one("cluster_primary_pause", 2.5)
            seen.add(info["pause"])
            old = info["old"]
            self.assertEqual([c for c in procs.calls if c[0] in ("pause", "resume")],
                             [("pause", old), ("resume", old)])
            seq = names(procs)
            self.assertLess(seq.index("resume"), seq.index("wait_settled"))
            lo_hi = run.tf.CLUSTER_PAUSES[info["pause"]]
            if lo_hi:  # short / edge: a fixed pause, no failover awaited
                self.assertNotIn("wait_failover", seq)
                self.assertTrue(lo_hi[0] <= slept[0] <= lo_hi[1])
                self.assertFalse(info["failed_over"])
            else:  # long: past the promotion, at least PAUSE_MIN_S in all
                self.assertLess(seq.index("wait_failover"), seq.index("resume"))
                self.assertGreaterEqual(2.0 + sum(slept), run.tf.PAUSE_MIN_S)
                self.assertTrue(info["failed_over"])
        self.assertEqual(seen, {"short", "edge", "long"})
        # A short pause stays below the node timeout; an edge one goes past it.
        self.assertLess(run.tf.CLUSTER_PAUSES["short"][1] * 1000, cluster.NODE_TIMEOUT_MS)
        self.assertGreater(run.tf.CLUSTER_PAUSES["edge"][0] * 1000, cluster.NODE_TIMEOUT_MS)

    def test_primary_pause_resumes_even_when_the_failover_wait_fails(self):
        for seed in range(10):
            procs = FakeCluster(fail="wait_failover")
            n, rec = nem(seed, procs)
            try:
                n.run_one("cluster_primary_pause", 2.5)
            except RuntimeError:
                pass
            paused = [c[1] for c in procs.calls if c[0] == "pause"]
            self.assertEqual([c[1] for c in procs.calls if c[0] == "resume"], paused)
            self.assertEqual(*starts_and_heals(rec.events))

    NODES = (
        "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
        "b2 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922\n"
        "c3 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383\n"
        "d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected\n"
        "e5 127.0.0.1:7004@17004 slave b2 0 1 2 connected\n"
        "f6 127.0.0.1:7005@17005 slave c3 0 1 3 connected\n")

    def test_cluster_nodes_is_parsed_and_a_whole_topology_recognised(self):
        view = cluster.parse_nodes(self.NODES.encode())
        self.assertEqual([n["slots"] for n in view], [5461, 5462, 5461, 0, 0, 0])
        self.assertEqual(view[0]["flags"], {"myself", "master"})
        self.assertEqual(view[3]["master"], "a1")
        ports = list(range(7000, 7006))
        self.assertTrue(cluster.settled_view(view, ports))
        self.assertFalse(cluster.settled_view(view, ports + [7006]))  # a server missing
        failed = self.NODES.replace("b2 127.0.0.1:7001@17001 master",
                                    "b2 127.0.0.1:7001@17001 master,fail")
        self.assertFalse(cluster.settled_view(cluster.parse_nodes(failed), ports))
        promoted = (self.NODES.replace("b2 127.0.0.1:7001@17001 master - 0 1 2 connected "
                                       "5461-10922", "b2 127.0.0.1:7001@17001 slave e5 0 1 2 "
                                       "connected")
                    .replace("e5 127.0.0.1:7004@17004 slave b2 0 1 2 connected",
                             "e5 127.0.0.1:7004@17004 master - 0 1 4 connected 5461-10922"))
        self.assertTrue(cluster.settled_view(cluster.parse_nodes(promoted), ports))
        alone = self.NODES.replace("e5 127.0.0.1:7004@17004 slave b2 0 1 2 connected",
                                   "e5 127.0.0.1:7004@17004 slave b2 0 1 2 disconnected")
        self.assertFalse(cluster.settled_view(cluster.parse_nodes(alone), ports))


class ModesTest(unittest.TestCase):
    def parse(self, *argv):
        return run.parse(["--binary", "x", "--out", "/tmp/x", *argv])

    def test_default_run_is_unchanged(self):
        a = self.parse()
        self.assertEqual(a.faults, run.nemesis.FAULTS)
        self.assertEqual((a.workload, a.topology, a.redis_persistence), ("http", "single", None))

    def test_each_mode_gets_its_faults(self):
        a = self.parse("--redis-persistence")
        self.assertEqual(a.redis_persistence, "aof")
        self.assertEqual(a.faults, run.nemesis.FAULTS + ["redis_restart_persist"])
        a = self.parse("--topology", "sentinel")
        self.assertEqual(set(a.faults) & {"primary_kill", "primary_pause", "primary_cut"},
                         {"primary_kill", "primary_pause", "primary_cut"})
        for f in ("redis_stop", "redis_restart", "proxy_blackhole", "combined"):
            self.assertNotIn(f, a.faults)
        self.assertEqual(self.parse("--workload", "library").workload, "library")
        self.assertEqual(self.parse("--l2-min-replicas", "2").l2_min_replicas, 2)
        self.assertIsNone(self.parse().l2_min_replicas)
        a = self.parse("--topology", "cluster")
        self.assertEqual(a.faults, list(run.tf.CLUSTER_GENERIC) + list(run.tf.CLUSTER_FAULTS))
        for f in ("redis_stop", "redis_restart", "proxy_blackhole", "combined",
                  "primary_cut", "primary_kill", "pubsub_overflow"):
            self.assertNotIn(f, a.faults)

    def test_a_fault_of_another_mode_is_refused(self):
        for argv in (["--faults", "primary_cut"], ["--faults", "redis_restart_persist"],
                     ["--topology", "sentinel", "--faults", "proxy_slow"],
                     ["--topology", "sentinel", "--redis-persistence"],
                     ["--faults", "cluster_primary_kill"],
                     ["--topology", "sentinel", "--faults", "cluster_primary_pause"],
                     ["--topology", "cluster", "--faults", "primary_kill"],
                     ["--topology", "cluster", "--faults", "redis_stop"],
                     ["--topology", "cluster", "--redis-persistence"]):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                self.parse(*argv)


if __name__ == "__main__":
    unittest.main()
