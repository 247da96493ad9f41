"""The Redis Cluster topology of a fault run (`--topology cluster`): three primaries with one
replica each (six redis-servers, `--cluster-enabled yes`, joined by `redis-cli --cluster
create ... --cluster-replicas 1`), the nodes configured with REDIS_CLUSTER_NODES (all six).

The node spreads every category over every primary (64 hash-tag buckets per category,
docs/topologies.md), so a fault of one primary hits a share of every category; the bus (the
sharded channels `{ns}:...`) lives on the one primary owning the slot of `{ns}`.

Settings: `cluster-node-timeout 1000` (a failover in about 2-3 s), `cluster-require-full-
coverage no` (the other primaries keep serving while one shard fails over: a fault hits part
of each category, not all of it), `cluster-replica-validity-factor 0` (a replica always
tries the failover), `repl-diskless-sync-delay 0` (a rejoining server syncs at once). No
persistence (the harness's `--save "" --appendonly no`); the cluster configuration
(`nodes.conf`, in each server's own directory) is kept, so a killed server restarted on its
port rejoins and becomes a replica of the one promoted in its place. No proxies: the nodes
talk to the servers directly. Ports and the redis-server command line come from the shared
harness (hc_testkit); every server is stopped by its pid.
"""

import os
import signal
import subprocess
import time

from procs import Procs, Redis, free_port, info_field, redis_server_command, wait_ping

SERVERS = ["r0", "r1", "r2", "r3", "r4", "r5"]
PRIMARIES = 3
NODE_TIMEOUT_MS = 1000
SLOTS = 16384
SERVER_ARGS = [
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
    "--cluster-require-full-coverage", "no",
    "--cluster-replica-validity-factor", "0",
    "--repl-diskless-sync-delay", "0",
]
# How long the settled state must hold before a round counts as healed: a FAIL flag raised
# during a pause shorter than the failover can still lead to an election after SIGCONT.
STABLE_S = 1.5


def parse_nodes(text):
    """CLUSTER NODES (bytes or str) as a list of dicts: id, port, flags (a set), master (id or
    None), link, slots (the number of slots served)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = []
    for line in text.splitlines():
        w = line.split()
        if len(w) < 8:
            continue
        slots = 0
        for s in w[8:]:
            if s.startswith("["):  # a slot being migrated or imported
                continue
            lo, _, hi = s.partition("-")
            slots += int(hi or lo) - int(lo) + 1
        out.append({"id": w[0], "port": int(w[1].split("@")[0].rsplit(":", 1)[1]),
                    "flags": set(w[2].split(",")),
                    "master": None if w[3] == "-" else w[3], "link": w[7],
                    "slots": slots})
    return out


def settled_view(view, ports):
    """Whether one server's CLUSTER NODES shows the whole topology: every server of `ports`,
    none flagged `fail`/`fail?` or handshaking, PRIMARIES primaries serving all slots, each
    with exactly one connected replica."""
    if not view or {n["port"] for n in view} != set(ports):
        return False
    if any(n["flags"] & {"fail", "fail?", "handshake", "noaddr"} for n in view):
        return False
    masters = [n for n in view if "master" in n["flags"] and n["slots"] > 0]
    if len(masters) != PRIMARIES or sum(n["slots"] for n in masters) != SLOTS:
        return False
    for m in masters:
        replicas = [n for n in view if n["master"] == m["id"]]
        if len(replicas) != 1 or replicas[0]["link"] != "connected":
            return False
    return True


class ClusterProcs(Procs):
    """Procs with a Redis Cluster instead of one redis-server. Server names are r0..r5 (the
    children's names, logs `redis-<name>.log`); `primaries()` names the current primaries."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.server_ports = {s: free_port() for s in SERVERS}
        self.redis_port = self.server_ports["r0"]
        self.paused = set()  # servers SIGSTOPped by a fault (never asked anything)

    # -- servers -------------------------------------------------------------------------
    def start_redis(self, timeout=30):
        """Starts the six servers, creates the cluster and waits until it has settled."""
        for s in SERVERS:
            self.start_server(s)
        addrs = [f"127.0.0.1:{self.server_ports[s]}" for s in SERVERS]
        with open(os.path.join(self.run_dir, "redis-cli-create.log"), "ab") as log:
            created = subprocess.run(
                ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "1",
                 "--cluster-yes"], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                timeout=timeout, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({created.returncode}); "
                               f"see {self.run_dir}/redis-cli-create.log")
        self.wait_settled(timeout)

    def start_server(self, s, timeout=15):
        """Starts server `s` on its port in its own directory: empty the first time, a
        rejoining member (its `nodes.conf`, no data) afterwards."""
        d = os.path.join(self.run_dir, s)
        os.makedirs(d, exist_ok=True)
        self._spawn(s, redis_server_command(self.server_ports[s], d, SERVER_ARGS),
                    log=f"redis-{s}.log")
        wait_ping(self.server_ports[s], timeout, f"redis {s}")

    def cmd(self, s, *args, timeout=1.0):
        """The answer of server `s` to `args` (None when it does not answer or is paused)."""
        if s in self.paused or self.pid(s) is None:
            return None
        try:
            r = Redis(self.server_ports[s], timeout=timeout)
            try:
                return r.cmd(*args)
            finally:
                r.close()
        except (OSError, RuntimeError):
            return None

    def view(self, s):
        """Server `s`'s CLUSTER NODES, parsed (None when it does not answer)."""
        text = self.cmd(s, "CLUSTER", "NODES")
        return parse_nodes(text) if text is not None else None

    def name_of(self, port):
        return next((s for s, p in self.server_ports.items() if p == port), None)

    def primaries(self):
        """The primaries (server names, sorted) that serve slots and are not flagged failed,
        as the first answering server sees them."""
        for s in SERVERS:
            v = self.view(s)
            if v:
                return sorted(self.name_of(n["port"]) for n in v
                              if "master" in n["flags"] and n["slots"] > 0
                              and not n["flags"] & {"fail", "fail?"})
        raise RuntimeError("no cluster server answers CLUSTER NODES")

    def replica_of(self, primary):
        """The server replicating `primary` (None when there is none)."""
        for s in SERVERS:
            v = self.view(s)
            if not v:
                continue
            ids = {n["port"]: n["id"] for n in v}
            pid = ids.get(self.server_ports[primary])
            return next((self.name_of(n["port"]) for n in v if pid and n["master"] == pid),
                        None)
        return None

    def owner(self, key):
        """The primary serving `key`'s slot (server name; None when nobody answers)."""
        for s in SERVERS:
            slot = self.cmd(s, "CLUSTER", "KEYSLOT", key)
            slots = self.cmd(s, "CLUSTER", "SLOTS") if slot is not None else None
            if not slots:
                continue
            for rng in slots:
                if int(rng[0]) <= slot <= int(rng[1]):
                    return self.name_of(int(rng[2][1]))
        return None

    def bus_primary(self):
        """The primary of the bus's slot (`{ns}`: every channel of the nodes)."""
        return self.owner(f"{{{self.namespace}}}:invalidations")

    def is_primary(self, s):
        role = self.cmd(s, "ROLE")
        return bool(role) and role[0] in (b"master", "master")

    def wait_failover(self, old, replica, timeout=20.0):
        """Waits until `replica` (the one of `old`) is a primary; returns (replica, seconds)
        or (None, timeout)."""
        t0 = time.monotonic()
        while replica and time.monotonic() - t0 < timeout:
            if self.is_primary(replica):
                return replica, round(time.monotonic() - t0, 2)
            time.sleep(0.1)
        return None, timeout

    def wait_settled(self, timeout=30.0):
        """Waits until every server runs, says `cluster_state:ok` and sees the whole topology
        (settled_view), and each primary has its replica `online`, all of it for STABLE_S;
        returns the seconds it took (raises on timeout)."""
        t0 = time.monotonic()
        since = None
        ports = list(self.server_ports.values())
        while time.monotonic() - t0 < timeout:
            if self.settled_now(ports):
                since = since or time.monotonic()
                if time.monotonic() - since >= STABLE_S:
                    return round(since - t0, 2)
            else:
                since = None
            time.sleep(0.25)
        views = {s: sorted((n["port"], ",".join(sorted(n["flags"])), n["slots"])
                           for n in (self.view(s) or [])) for s in SERVERS}
        raise RuntimeError(f"redis cluster did not settle within {timeout}s: {views}")

    def settled_now(self, ports):
        for s in SERVERS:
            info = self.cmd(s, "CLUSTER", "INFO")
            if info is None or info_field(info, "cluster_state") != "ok":
                return False
            if not settled_view(self.view(s), ports):
                return False
            if self.is_primary(s):
                repl = self.cmd(s, "INFO", "replication")
                if repl is None or "state=online" not in (info_field(repl, "slave0") or ""):
                    return False
        return True

    def redis(self):
        """A connection to the bus's primary (pubsub_kill)."""
        return Redis(self.server_ports[self.bus_primary() or "r0"])

    def pause(self, s):
        self.paused.add(s)
        return self.signal(s, signal.SIGSTOP)

    def resume(self, s):
        ok = self.signal(s, signal.SIGCONT)
        self.paused.discard(s)
        return ok

    # -- nodes ---------------------------------------------------------------------------
    def start_proxies(self, names):
        """No per-node proxies: the nodes talk to the cluster's servers directly."""

    def plan_nodes(self, ids):
        self.node_env["REDIS_CLUSTER_NODES"] = ",".join(f"127.0.0.1:{self.server_ports[s]}"
                                                        for s in SERVERS)
        super().plan_nodes(ids)

    def redis_args(self, i):
        """The nodes find the cluster through REDIS_CLUSTER_NODES."""
        return []
