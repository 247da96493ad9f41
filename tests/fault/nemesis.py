"""Faults: each one is applied, held, healed; the run records `start`/`heal`/`end` events.

Every fault ends healed (also on an exception) so the run never leaves a stopped process
or a blackholed link behind. `combined` applies two faults at once (overlapping holds); each
part records its own `start`/`heal` events with `part_of: "combined"` inside the round's.
"""

import random
import signal
import threading
import time

import workload
from topology_faults import TopologyFaults

FAULTS = [
    "none", "node_kill", "node_stop", "redis_stop", "redis_restart", "pubsub_kill",
    "pubsub_overflow", "proxy_blackhole", "proxy_slow", "proxy_reset", "actor_crash",
    "combined",
]
STOP_S = 3.0
# Faults on Redis itself: two of them at once would fight over one process (a CLIENT KILL
# against a SIGSTOPped Redis hangs, SIGCONT of a killed one is lost), so they never pair.
REDIS_FAULTS = frozenset({"redis_stop", "redis_restart", "pubsub_kill", "pubsub_overflow"})
# Faults on a node's process: when both parts are such faults they hit two different nodes.
NODE_PROCESS_FAULTS = frozenset({"node_kill", "node_stop"})


def combined_pairs(faults=None):
    """The pairs `combined` picks from (sorted, deterministic): two distinct real faults of
    `faults` (default: all), never two on Redis."""
    pool = [f for f in (faults or FAULTS) if f not in ("none", "combined")]
    pairs = []
    for i, a in enumerate(pool):
        for b in pool[i + 1:]:
            if a in REDIS_FAULTS and b in REDIS_FAULTS:
                continue
            pairs.append((a, b))
    return pairs


def pubsub_ids(r):
    """Ids of the current pub/sub client connections."""
    text = r.cmd("CLIENT", "LIST", "TYPE", "pubsub").decode()
    return {w[3:] for line in text.splitlines() for w in line.split() if w.startswith("id=")}


def rotation(rng, faults):
    """The rounds' faults: every fault once per cycle, in a random order per cycle, so a run
    of len(faults) rounds covers each (an independent pick per round skips some)."""
    while True:
        cycle = list(faults)
        rng.shuffle(cycle)
        yield from cycle


class Nemesis(TopologyFaults):
    def __init__(self, procs, recorder, rng, now_us, log, sleep=time.sleep, faults=None,
                 categories=None):
        self.p, self.rec, self.rng, self.now_us, self.log = procs, recorder, rng, now_us, log
        self.sleep = sleep
        # The categories `actor_crash` picks from (the run's).
        self.categories = list(categories or workload.CATEGORIES)
        # `combined` pairs the run's faults (`--faults`), or all when those make no pair.
        self.pairs = combined_pairs(faults) or combined_pairs()

    def event(self, kind, phase, target=None, **extra):
        self.rec.write({"type": "fault", "kind": kind, "phase": phase, "target": target,
                        "t": self.now_us(), **extra})

    def target_of(self, kind, avoid=()):
        """A random node for node, proxy and actor faults (not one of `avoid` if possible),
        "redis" for Redis faults, None otherwise."""
        if kind in REDIS_FAULTS:
            return "redis"
        if kind.startswith(("node_", "proxy_", "actor_")):
            nodes = [n for n in sorted(self.p.nodes) if n not in avoid] or sorted(self.p.nodes)
            return self.rng.choice(nodes)
        return None

    def run_one(self, kind, hold_s, target=None, part_of=None):
        """Applies `kind` to a random target (or `target`), holds it `hold_s`, heals. Returns
        (target, summary)."""
        target = target or self.target_of(kind)
        extra = {"part_of": part_of} if part_of else {}
        self.event(kind, "start", target, **extra)
        info = {}
        try:
            info = getattr(self, "_" + kind)(target, hold_s) or {}
        finally:
            self.event(kind, "heal", target, **extra, **info)
        return target, info

    def _none(self, _t, hold_s):
        self.sleep(hold_s)

    def _combined(self, _t, hold_s):
        """Two faults at once: the first applied, the second `offset` later (0-1 s) in its
        own thread, both held `hold_s` (so they overlap), each healed in its own finally."""
        a, b = self.rng.choice(self.pairs)
        if self.rng.random() < 0.5:  # either one may come first
            a, b = b, a
        ta = self.target_of(a)
        both_process = a in NODE_PROCESS_FAULTS and b in NODE_PROCESS_FAULTS
        tb = self.target_of(b, avoid=(ta,) if both_process else ())
        offset = self.rng.uniform(0.0, 1.0)
        # The second part draws from its own generator: the run stays reproducible by seed.
        second = Nemesis(self.p, self.rec, random.Random(self.rng.random()), self.now_us,
                         self.log, self.sleep, faults=[])
        results, errors = {}, []

        def part_b():
            try:
                self.sleep(offset)
                results[b] = second.run_one(b, hold_s, tb, part_of="combined")
            except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
                errors.append(e)

        t = threading.Thread(target=part_b, name="nemesis-combined", daemon=True)
        t.start()
        try:
            results[a] = self.run_one(a, hold_s, ta, part_of="combined")
        finally:
            t.join()
        if errors:
            raise errors[0]
        return {"parts": [f"{k}@{results[k][0] or '-'}" for k in (a, b)], "offset_s":
                round(offset, 2), **{k: results[k][1] for k in (a, b) if results[k][1]}}

    def _actor_crash(self, node, hold_s):
        """Crashes a random category actor of `node` several times during the hold (through
        the node's test hook, `HC_TEST_HOOKS=1`). A crash the node did not take (it is
        stopped or restarting in a combined round) is counted, not an error."""
        n = self.rng.randint(2, 4)
        crashed, refused = [], 0
        for _ in range(n):
            cat = self.rng.choice(self.categories)
            if self.p.crash_actor(node, cat):
                crashed.append(cat)
            else:
                refused += 1
            self.sleep(hold_s / n)
        return {"crashed": crashed, "refused": refused}

    def _node_kill(self, node, hold_s):
        self.p.kill(node)
        self.sleep(min(hold_s, 2.0))
        self.p.start_node(node)
        t = time.monotonic()
        self.p.wait_healthy(node)
        return {"restart_s": round(time.monotonic() - t, 2)}

    def _node_stop(self, node, _hold):
        self.p.signal(node, signal.SIGSTOP)
        try:
            self.sleep(STOP_S)
        finally:
            self.p.signal(node, signal.SIGCONT)

    def _redis_stop(self, _t, _hold):
        self.p.signal("redis", signal.SIGSTOP)
        try:
            self.sleep(STOP_S)
        finally:
            self.p.signal("redis", signal.SIGCONT)

    def _redis_restart(self, _t, hold_s):
        self.p.kill("redis")
        self.sleep(min(hold_s, 1.5))
        self.p.start_redis()

    def _pubsub_kill(self, _t, hold_s):
        r = self.p.redis()
        try:
            killed = r.cmd("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            r.close()
        self.sleep(hold_s)
        return {"killed": killed}

    def _pubsub_overflow(self, _t, hold_s):
        """Shrinks the pub/sub output buffer limit and publishes large junk on the namespace
        channel so Redis disconnects the subscribers; restores the limit. Reports how many
        of the subscriber connections present before the burst were dropped."""
        r = self.p.redis()
        try:
            before = r.cmd("CONFIG", "GET", "client-output-buffer-limit")[1]
            subs = pubsub_ids(r)
            r.cmd("CONFIG", "SET", "client-output-buffer-limit", "pubsub 64kb 32kb 1")
            channel = f"{self.p.namespace}:invalidations"
            junk = b"\xff" * (256 * 1024)
            receivers = r.pipeline([("PUBLISH", channel, junk)] * 8)[0]
            self.sleep(0.1)
            dropped = len(subs - pubsub_ids(r))
            r.cmd("CONFIG", "SET", "client-output-buffer-limit", before)
        finally:
            r.close()
        self.sleep(hold_s)
        return {"receivers": receivers, "subscribers_dropped": dropped}

    def _proxy(self, node, mode, hold_s):
        self.p.proxy_mode(node, mode)
        try:
            self.sleep(hold_s)
        finally:
            self.p.proxy_mode(node, "pass")

    def _proxy_blackhole(self, node, hold_s):
        self._proxy(node, "blackhole", hold_s)

    def _proxy_slow(self, node, hold_s):
        self._proxy(node, "slow", hold_s)

    def _proxy_reset(self, node, hold_s):
        self.p.proxy_mode(node, "reset")
        self.sleep(hold_s)
