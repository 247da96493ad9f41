"""The Sentinel topology of a fault run (`--topology sentinel`): a primary, two replicas and
three sentinels, every Redis server behind its own proxy (proxy.py), the nodes configured
with REDIS_SENTINELS / REDIS_SENTINEL_MASTER.

Why the proxies: the sentinels are started with `bind-source-addr 127.0.0.2` and know every
server only by its proxy (each server announces its proxy's port, `replica-announce-port`),
so `primary_cut` can cut the current primary off from the sentinels only (the proxy's
`cut=127.0.0.2`) while the nodes and the replicas, connecting from 127.0.0.1, keep it.
Ports and the redis-server command line come from the shared harness (hc_testkit).
"""

import os
import signal
import subprocess
import sys
import time

import procs as procs_mod
from procs import Procs, Redis, free_port, redis_server_command, wait_ping

MASTER = "hcfault"
SERVERS = ["r0", "r1", "r2"]  # r0 is the first primary
SENTINEL_SOURCE = "127.0.0.2"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def sentinel_conf(port, run_dir, primary_port):
    """A sentinel's configuration: loopback only, connections from 127.0.0.2, the primary
    (its proxy) monitored with quorum 2."""
    return (f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {run_dir}\n"
            f"bind-source-addr {SENTINEL_SOURCE}\n"
            "sentinel announce-ip 127.0.0.1\nsentinel resolve-hostnames no\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n")


class SentinelProcs(Procs):
    """Procs with a Sentinel-managed primary instead of one redis-server. Server names are
    r0..r2 (their proxies have the same names); `primary()` names the current one."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.server_ports = {s: free_port() for s in SERVERS}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.redis_port = self.server_ports["r0"]

    # -- servers -------------------------------------------------------------------------
    def start_redis(self, timeout=15):
        """Starts the proxies, the three servers (r1, r2 replicas of r0) and the sentinels."""
        specs = [f"{s}:{self.server_ports[s]}" for s in SERVERS]
        self.proxy = self._spawn("proxy", [sys.executable,
                                           os.path.join(procs_mod.HERE, "proxy.py"),
                                           "0", *specs],
                                 log="proxy.log", stdout=subprocess.PIPE,
                                 stdin=subprocess.PIPE, text=True)
        line = self.proxy.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"proxy did not start: {line}")
        self.proxy_ports = {k: int(v) for k, v in (x.split("=") for x in line[1:])}
        for s in SERVERS:
            self.start_server(s, None if s == "r0" else "r0", timeout)
        for i, port in enumerate(self.sentinel_ports):
            conf = os.path.join(self.run_dir, f"sentinel{i}.conf")
            with open(conf, "w", encoding="utf-8") as fh:
                fh.write(sentinel_conf(port, self.run_dir, self.proxy_ports["r0"]))
            self._spawn(f"sentinel{i}", ["redis-sentinel", conf], log=f"sentinel{i}.log")
        self.wait_settled(timeout=30)

    def start_server(self, s, replica_of=None, timeout=15):
        """Starts server `s` (empty) announcing its proxy's port; a replica of `replica_of`
        (through that one's proxy) when given."""
        d = os.path.join(self.run_dir, s)
        os.makedirs(d, exist_ok=True)
        extra = ["--replica-announce-ip", "127.0.0.1",
                 "--replica-announce-port", str(self.proxy_ports[s])]
        if replica_of:
            extra += ["--replicaof", "127.0.0.1", str(self.proxy_ports[replica_of])]
        self._spawn(s, redis_server_command(self.server_ports[s], d, extra),
                    log=f"redis-{s}.log")
        wait_ping(self.server_ports[s], timeout, f"redis {s}")

    def sentinel_cmd(self, *args):
        """The first answer of a sentinel to `args` (None when none answers)."""
        for port in self.sentinel_ports:
            try:
                r = Redis(port, timeout=1)
                try:
                    return r.cmd(*args)
                finally:
                    r.close()
            except (OSError, RuntimeError):
                continue
        return None

    def primaries(self):
        """The primary each sentinel names (server names; None when one does not answer)."""
        by_port = {p: s for s, p in self.proxy_ports.items()}
        out = []
        for port in self.sentinel_ports:
            try:
                r = Redis(port, timeout=1)
                try:
                    addr = r.cmd("SENTINEL", "get-master-addr-by-name", MASTER)
                finally:
                    r.close()
                out.append(by_port.get(int(addr[1])) if addr else None)
            except (OSError, RuntimeError, ValueError, IndexError, TypeError):
                out.append(None)
        return out

    def primary(self):
        """The current primary: the one most sentinels name."""
        named = [p for p in self.primaries() if p]
        if not named:
            raise RuntimeError("no sentinel names a primary")
        return max(set(named), key=named.count)

    def role(self, s):
        try:
            r = Redis(self.server_ports[s], timeout=1)
            try:
                return r.cmd("ROLE")
            finally:
                r.close()
        except (OSError, RuntimeError):
            return None

    def wait_failover(self, old, timeout=20.0):
        """Waits until a majority of sentinels names a primary other than `old`; returns
        (new, seconds) or (None, timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            named = [p for p in self.primaries() if p and p != old]
            if len(named) >= 2 and named.count(named[0]) >= 2:
                return named[0], round(time.monotonic() - t0, 2)
            time.sleep(0.1)
        return None, timeout

    def wait_settled(self, timeout=30.0):
        """Waits until every sentinel names one primary that says `master` with the other two
        servers as connected replicas; returns the seconds it took (raises on timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            named = self.primaries()
            p = named[0]
            if p and all(n == p for n in named):
                role = self.role(p)
                if role and role[0] in (b"master", "master") and len(role[2]) == 2:
                    return round(time.monotonic() - t0, 2)
            time.sleep(0.2)
        raise RuntimeError(f"sentinel topology did not settle within {timeout}s: "
                           f"sentinels name {self.primaries()}")

    def redis(self):
        """A connection to the current primary (pubsub_kill, pubsub_overflow)."""
        return Redis(self.server_ports[self.primary()])

    def pause(self, s):
        return self.signal(s, signal.SIGSTOP)

    def resume(self, s):
        return self.signal(s, signal.SIGCONT)

    # -- nodes ---------------------------------------------------------------------------
    def start_proxies(self, names):
        """No per-node proxies: the nodes find the primary through the sentinels."""

    def plan_nodes(self, ids):
        self.node_env["REDIS_SENTINELS"] = ",".join(f"127.0.0.1:{p}"
                                                    for p in self.sentinel_ports)
        self.node_env["REDIS_SENTINEL_MASTER"] = MASTER
        super().plan_nodes(ids)

    def redis_args(self, i):
        """The nodes find the primary through the sentinels (REDIS_SENTINELS)."""
        return []
