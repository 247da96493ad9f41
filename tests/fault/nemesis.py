"""Faults: each one is applied, held, healed; the run records `start`/`heal`/`end` events.

Every fault ends healed (also on an exception) so the run never leaves a stopped process
or a blackholed link behind.
"""

import signal
import time

FAULTS = [
    "none", "node_kill", "node_stop", "redis_stop", "redis_restart", "pubsub_kill",
    "pubsub_overflow", "proxy_blackhole", "proxy_slow", "proxy_reset",
]
STOP_S = 3.0


def pubsub_ids(r):
    """Ids of the current pub/sub client connections."""
    text = r.cmd("CLIENT", "LIST", "TYPE", "pubsub").decode()
    return {w[3:] for line in text.splitlines() for w in line.split() if w.startswith("id=")}


class Nemesis:
    def __init__(self, procs, recorder, rng, now_us, log):
        self.p, self.rec, self.rng, self.now_us, self.log = procs, recorder, rng, now_us, log

    def event(self, kind, phase, target=None, **extra):
        self.rec.write({"type": "fault", "kind": kind, "phase": phase, "target": target,
                        "t": self.now_us(), **extra})

    def run_one(self, kind, hold_s):
        """Applies `kind` to a random target, holds it `hold_s`, heals. Returns a summary."""
        nodes = sorted(self.p.nodes)
        target = self.rng.choice(nodes) if kind.startswith(("node_", "proxy_")) else None
        if kind in ("redis_stop", "redis_restart", "pubsub_kill", "pubsub_overflow"):
            target = "redis"
        self.event(kind, "start", target)
        info = {}
        try:
            info = getattr(self, "_" + kind)(target, hold_s) or {}
        finally:
            self.event(kind, "heal", target, **info)
        return target, info

    def _none(self, _t, hold_s):
        time.sleep(hold_s)

    def _node_kill(self, node, hold_s):
        self.p.kill(node)
        time.sleep(min(hold_s, 2.0))
        self.p.start_node(node)
        t = time.monotonic()
        self.p.wait_healthy(node)
        return {"restart_s": round(time.monotonic() - t, 2)}

    def _node_stop(self, node, _hold):
        self.p.signal(node, signal.SIGSTOP)
        try:
            time.sleep(STOP_S)
        finally:
            self.p.signal(node, signal.SIGCONT)

    def _redis_stop(self, _t, _hold):
        self.p.signal("redis", signal.SIGSTOP)
        try:
            time.sleep(STOP_S)
        finally:
            self.p.signal("redis", signal.SIGCONT)

    def _redis_restart(self, _t, hold_s):
        self.p.kill("redis")
        time.sleep(min(hold_s, 1.5))
        self.p.start_redis()

    def _pubsub_kill(self, _t, hold_s):
        r = self.p.redis()
        try:
            killed = r.cmd("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            r.close()
        time.sleep(hold_s)
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
            time.sleep(0.1)
            dropped = len(subs - pubsub_ids(r))
            r.cmd("CONFIG", "SET", "client-output-buffer-limit", before)
        finally:
            r.close()
        time.sleep(hold_s)
        return {"receivers": receivers, "subscribers_dropped": dropped}

    def _proxy(self, node, mode, hold_s):
        self.p.proxy_mode(node, mode)
        try:
            time.sleep(hold_s)
        finally:
            self.p.proxy_mode(node, "pass")

    def _proxy_blackhole(self, node, hold_s):
        self._proxy(node, "blackhole", hold_s)

    def _proxy_slow(self, node, hold_s):
        self._proxy(node, "slow", hold_s)

    def _proxy_reset(self, node, hold_s):
        self.p.proxy_mode(node, "reset")
        time.sleep(hold_s)
