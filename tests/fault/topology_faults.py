"""Faults of the persistent-Redis and Sentinel modes, mixed into nemesis.Nemesis (which
records their `start`/`heal` events and dispatches `_<kind>`).

- `redis_restart_persist` (`--redis-persistence`): the data is saved (`SAVE` with RDB,
  `BGREWRITEAOF` and its end with AOF), Redis is SIGKILLed and restarted on the same port
  with its data. With RDB the kill comes a hold after the `SAVE`, so the restart rolls back
  the writes, deletes and generation bumps of the hold (the case of issue #23 item 4); with
  AOF (fsync every second) it comes right after the rewrite (nothing acknowledged is lost
  but the last second).
- `primary_kill` (`--topology sentinel`): SIGKILL of the current primary, the sentinels fail
  over, the old one is restarted (empty) as a replica of the new one.
- `primary_pause`: SIGSTOP of the current primary for longer than `down-after-milliseconds`
  (the sentinels fail over meanwhile), then SIGCONT: it comes back as a primary until the
  sentinels demote it.
- `primary_cut`: the current primary is cut off from the sentinels only (its proxy
  blackholes connections from 127.0.0.2, the sentinels' source address), held until a
  failover plus the hold, then healed.

Each Sentinel fault ends by waiting until the topology has settled again (one primary with
two replicas, named by every sentinel), so the next round starts from a whole topology.

- `cluster_primary_kill` (`--topology cluster`): SIGKILL of a random primary of the Redis
  Cluster (its shard holds a share of every category's buckets; the bus too when it owns the
  slot of `{ns}`), wait until the cluster promotes its replica, hold, restart the killed
  server on its port with its `nodes.conf`: it rejoins (empty) as the new primary's replica.
- `cluster_primary_pause`: SIGSTOP of a random primary, then SIGCONT; the pause is `short`
  (0.2-0.7 s, below `cluster-node-timeout`: no failover), `edge` (1.1-1.8 s: past the node
  timeout, before or during the election; a failover may still follow the resume) or `long`
  (until its replica is promoted, at least PAUSE_MIN_S and the hold: the old primary comes
  back and is demoted by the cluster).

Each cluster fault ends by waiting until every server is up and sees three primaries with
one online replica each, no node flagged failed, for cluster.STABLE_S in a row, so at most
one primary is ever down.
"""

import signal
import time

from procs import info_field

PERSISTENCE_FAULTS = ("redis_restart_persist",)
SENTINEL_FAULTS = ("primary_kill", "primary_pause", "primary_cut")
# The generic faults that make sense with Sentinel (no per-node proxies, three servers).
SENTINEL_GENERIC = ("none", "node_kill", "node_stop", "pubsub_kill", "actor_crash")
CLUSTER_FAULTS = ("cluster_primary_kill", "cluster_primary_pause")
# The generic faults that make sense with a Redis Cluster (no per-node proxies, six servers;
# `pubsub_kill` on the primary of the bus's slot).
CLUSTER_GENERIC = ("none", "node_kill", "node_stop", "pubsub_kill", "actor_crash")
# `cluster_primary_pause` lengths, seconds (None: until the failover plus the hold).
CLUSTER_PAUSES = {"short": (0.2, 0.7), "edge": (1.1, 1.8), "long": None}
# How long a paused primary stays stopped at least: past down-after-milliseconds (1 s) and
# the sentinels' election.
PAUSE_MIN_S = 4.0
FAILOVER_WAIT_S = 20.0


class TopologyFaults:
    """Mixin of nemesis.Nemesis: needs self.p (procs), self.sleep."""

    def _redis_restart_persist(self, _t, hold_s):
        mode = getattr(self.p, "persistence", None)
        if not mode:
            raise RuntimeError("redis_restart_persist needs --redis-persistence")
        r = self.p.redis()
        try:
            keys = r.cmd("DBSIZE")
            if mode == "rdb":
                r.cmd("SAVE")
                self.sleep(hold_s)  # acknowledged changes the restart will roll back
            else:
                r.cmd("BGREWRITEAOF")
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    info = r.cmd("INFO", "persistence")
                    if (info_field(info, "aof_rewrite_in_progress") == "0"
                            and info_field(info, "aof_rewrite_scheduled") == "0"):
                        break
                    self.sleep(0.05)
                else:
                    raise RuntimeError("BGREWRITEAOF did not finish within 15 s")
        finally:
            r.close()
        self.p.kill("redis")
        self.sleep(1.5 if mode == "rdb" else min(hold_s, 1.5))
        self.p.start_redis()
        r = self.p.redis()
        try:
            after = r.cmd("DBSIZE")
        finally:
            r.close()
        return {"saved": mode, "keys_before": keys, "keys_after": after}

    def _primary_kill(self, _t, hold_s):
        old = self.p.primary()
        self.p.kill(old)
        new, took = self.p.wait_failover(old, FAILOVER_WAIT_S)
        self.sleep(max(0.0, hold_s - took))
        self.p.start_server(old, replica_of=new)
        return {"old": old, "new": new, "failover_s": took, "settled_s": self.p.wait_settled()}

    def _primary_pause(self, _t, hold_s):
        old = self.p.primary()
        self.p.signal(old, signal.SIGSTOP)
        try:
            new, took = self.p.wait_failover(old, max(hold_s, PAUSE_MIN_S))
            self.sleep(max(0.0, max(hold_s, PAUSE_MIN_S) - took))
        finally:
            self.p.signal(old, signal.SIGCONT)
        return {"old": old, "new": new, "failover_s": took, "settled_s": self.p.wait_settled()}

    def _primary_cut(self, _t, hold_s):
        old = self.p.primary()
        self.p.proxy_mode(old, "cut=127.0.0.2")
        try:
            new, took = self.p.wait_failover(old, FAILOVER_WAIT_S)
            self.sleep(hold_s)
        finally:
            self.p.proxy_mode(old, "pass")
        return {"old": old, "new": new, "failover_s": took, "settled_s": self.p.wait_settled()}

    def _cluster_victim(self):
        """A random current primary of the cluster, its replica, and whether it holds the
        bus."""
        old = self.rng.choice(self.p.primaries())
        return old, self.p.replica_of(old), self.p.bus_primary() == old

    def _cluster_primary_kill(self, _t, hold_s):
        old, replica, bus = self._cluster_victim()
        self.p.kill(old)
        new, took = None, None
        try:
            new, took = self.p.wait_failover(old, replica, FAILOVER_WAIT_S)
            self.sleep(max(0.0, hold_s - took))
        finally:
            self.p.start_server(old)  # rejoins as a replica (its nodes.conf, no data)
        return {"old": old, "new": new, "bus": bus, "failover_s": took,
                "settled_s": self.p.wait_settled()}

    def _cluster_primary_pause(self, _t, hold_s):
        old, replica, bus = self._cluster_victim()
        mode = self.rng.choice(sorted(CLUSTER_PAUSES))
        span = CLUSTER_PAUSES[mode]
        pause_s = self.rng.uniform(*span) if span else max(hold_s, PAUSE_MIN_S)
        took = None  # seconds until the replica was promoted (long pauses only)
        t0 = time.monotonic()
        self.p.pause(old)
        try:
            if span:
                self.sleep(pause_s)
            else:
                took = self.p.wait_failover(old, replica, max(FAILOVER_WAIT_S, pause_s))[1]
                self.sleep(max(0.0, pause_s - took))
        finally:
            self.p.resume(old)
        paused = round(time.monotonic() - t0, 2)
        settled = self.p.wait_settled()
        return {"old": old, "replica": replica, "bus": bus, "pause": mode, "paused_s": paused,
                "failover_s": took, "failed_over": old not in self.p.primaries(),
                "settled_s": settled}
