"""The processes of a fault run: a private redis-server, the proxy process, the nodes.

Every child is started from the main thread in its own session (a Ctrl-C reaches only the
run, which then stops the clients, heals, stops the children and still checks the history)
with PR_SET_PDEATHSIG=SIGKILL (it dies with the run even if the run is SIGKILLed), and is
tracked here by pid, so `stop_all` stops exactly what this run started, and nothing else.
Redis is never on port 6379.
"""

import concurrent.futures
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# Free ports and the redis-server command line come from the shared test harness
# (testkit/: loopback, below the ephemeral range, free for TCP and UDP, never 6379, never
# twice in this process).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "testkit"))
from hc_testkit import free_port, redis_server_command  # noqa: E402


class Redis:
    """Minimal RESP client (stdlib): one connection, one command at a time."""

    def __init__(self, port, timeout=2.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"bad RESP reply {line!r}")

    def cmd(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.reply() for _ in commands]


def wait_ping(port, timeout, what):
    """Waits until the Redis on `port` answers PING; RuntimeError naming `what` at `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = Redis(port, timeout=1)
            try:
                if r.cmd("PING") == "PONG":
                    return
            finally:
                r.close()
        except (OSError, RuntimeError):
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer PING")


class Spawner:
    """Starts every child from one long-lived thread, each dying with the checker.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process;
    the nemesis runs fault parts in short-lived threads (`combined`), so a node restarted
    there was SIGKILLed as soon as its part ended (seen in a 10-minute run: n1 down for
    2.5 min after a combined round with node_kill).
    """

    def __init__(self):
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="spawner")

    def popen(self, args, **kw):
        return self._thread.submit(
            subprocess.Popen, args, preexec_fn=_die_with_parent, start_new_session=True,
            **kw).result()


# `--redis-persistence`: the redis-server arguments of each mode (later arguments override
# hc-testkit's `--save "" --appendonly no`).
PERSISTENCE_ARGS = {
    "aof": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "rdb": ["--save", "3600 1"],
}


class Procs:
    def __init__(self, run_dir, binary, bound_ms, strict, persistence=None, node_env=None,
                 node_config=""):
        self.run_dir, self.binary = run_dir, binary
        self.node_config = node_config  # appended to node.toml (e.g. `[categories.near]`)
        self.bound_ms, self.strict = bound_ms, strict
        # None, "aof" or "rdb": Redis keeps its data across `redis_restart(_persist)`, and the
        # nodes accept it (HC_ALLOW_PERSISTENT_REDIS, outside the guarantee).
        self.persistence = persistence
        self.node_env = dict(node_env or {})
        if persistence:
            self.node_env["HC_ALLOW_PERSISTENT_REDIS"] = "true"
        self.children = {}  # name -> Popen
        self._spawner = Spawner()
        self.redis_port = free_port()
        self.proxy = None
        self.proxy_lock = threading.Lock()
        self.proxy_ports = {}
        self.nodes = {}  # id -> dict(http, gossip, args)
        self.namespace = f"fc{os.getpid()}x{int(time.time()) % 100000}"

    # -- generic -------------------------------------------------------------------------
    def _spawn(self, name, args, env=None, log=None, **kw):
        out = open(os.path.join(self.run_dir, log or f"{name}.log"), "ab")
        stdout = kw.pop("stdout", out)
        p = self._spawner.popen(args, stdout=stdout, stderr=out, env=env, **kw)
        out.close()
        self.children[name] = p
        return p

    def pid(self, name):
        p = self.children.get(name)
        return p.pid if p and p.poll() is None else None

    def signal(self, name, sig):
        pid = self.pid(name)
        if pid:
            os.kill(pid, sig)
        return pid is not None

    def kill(self, name):
        p = self.children.pop(name, None)
        if p and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
        if p:
            p.wait(timeout=10)

    def stop_all(self):
        for name in list(self.children):
            if name == "proxy":
                continue
            self.kill(name)
        if self.proxy is not None:
            try:
                self.proxy.stdin.close()
                self.proxy.wait(timeout=3)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self.kill("proxy")
            self.proxy = None

    # -- redis ---------------------------------------------------------------------------
    def start_redis(self, timeout=15):
        # hc-testkit execs redis-server: the child's pid is the server's.
        extra = PERSISTENCE_ARGS[self.persistence] if self.persistence else []
        self._spawn("redis", redis_server_command(self.redis_port, self.run_dir, extra),
                    log="redis.log")
        wait_ping(self.redis_port, timeout, "redis-server")

    def redis(self):
        return Redis(self.redis_port)

    # -- proxies -------------------------------------------------------------------------
    def start_proxies(self, names):
        self.proxy = self._spawn("proxy", [sys.executable, os.path.join(HERE, "proxy.py"),
                                           str(self.redis_port), *names],
                                 log="proxy.log", stdout=subprocess.PIPE,
                                 stdin=subprocess.PIPE, text=True)
        line = self.proxy.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"proxy did not start: {line}")
        self.proxy_ports = {k: int(v) for k, v in (x.split("=") for x in line[1:])}

    def proxy_mode(self, name, mode):
        with self.proxy_lock:  # combined rounds drive two proxies from two threads
            self.proxy.stdin.write(f"{name} {mode}\n")
            self.proxy.stdin.flush()
            answer = self.proxy.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"proxy: {answer}")

    # -- nodes ---------------------------------------------------------------------------
    def plan_nodes(self, ids):
        cfg = os.path.join(self.run_dir, "node.toml")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(f'namespace = "{self.namespace}"\n')
            fh.write(self.node_config)
        for i in ids:
            self.nodes[i] = {"http": free_port(), "gossip": free_port()}
        for i, n in self.nodes.items():
            peers = ",".join(f"127.0.0.1:{m['gossip']}" for j, m in self.nodes.items() if j != i)
            n["args"] = [self.binary, "node", "--config", cfg, "--node-id", i,
                         "--http", f"127.0.0.1:{n['http']}", "--gossip",
                         f"127.0.0.1:{n['gossip']}", "--peers", peers,
                         *self.redis_args(i)]

    def redis_args(self, i):
        """How node `i` finds Redis: through its proxy."""
        return ["--redis-url", f"redis://127.0.0.1:{self.proxy_ports[i]}/0"]

    def start_node(self, i):
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"),
                   HC_STALENESS_BOUND_MS=str(int(self.bound_ms)),
                   HC_STRICT_CATEGORIES=",".join(self.strict),
                   # Gossip without TLS (loopback) authenticates frames with a shared secret.
                   HC_CLUSTER_SECRET="fault-check-cluster-secret",
                   # Mounts POST /v1/test/crash/{category} (the nemesis' actor_crash).
                   HC_TEST_HOOKS="1", **self.node_env)
        self._spawn(i, self.nodes[i]["args"], env=env, log=f"node-{i}.log",
                    stdout=subprocess.DEVNULL)

    def url(self, i):
        return f"http://127.0.0.1:{self.nodes[i]['http']}"

    def crash_actor(self, i, category):
        """Crashes `category`'s actor on node `i` (test hook). True when the node took it."""
        url = self.url(i) + "/v1/test/crash/" + urllib.parse.quote(category, safe="")
        req = urllib.request.Request(url, data=b"", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status == 204
        except urllib.error.HTTPError as e:
            if e.code in (404, 405):  # the hook is missing: a setup error, not a fault
                raise RuntimeError(f"node {i}: no crash hook ({e.code})") from e
            return False
        except OSError:
            return False

    def wait_healthy(self, i, timeout=30):
        """Waits until the node answers /health (any status: it is serving)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid(i) is None:
                raise RuntimeError(f"node {i} exited; see {self.run_dir}/node-{i}.log")
            try:
                with urllib.request.urlopen(self.url(i) + "/health", timeout=1) as r:
                    return json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                return json.loads(e.read() or b"{}")
            except (OSError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"node {i} did not answer /health within {timeout}s")


def info_field(text, name):
    """A field of an INFO answer (bytes or str), None when absent."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None
