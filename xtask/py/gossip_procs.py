"""Start and stop a cluster of real node processes for the gossip scripts.

Shared by bench_gossip.py and soak_gossip.py (`cargo xtask bench gossip`, `cargo xtask soak gossip`): both run N release-build
nodes (L1 only, no TLS, loopback gossip sealed with a cluster secret, 1 worker thread each),
every node but the first joining through the first one, with each node's log in LOGDIR/ID.log.
With one_by_one (the cold start of `cargo xtask bench gossip --cold-start`), each process is
started only once the previous one answers GET /health, as an operator or an orchestrator
bringing nodes up one after another would.
"""
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from ports import free_port


def wait_ready(port, proc, timeout=10.0):
    """Until GET /health on the loopback port answers (any status), the process exits, or
    the timeout passes."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answered (503 while it has no peers is fine)
        except OSError:
            time.sleep(0.01)


def start_cluster(binary, n, logdir, secret, one_by_one=False):
    """Start n nodes g0..g{n-1}; returns (ids, http ports, processes by id). With one_by_one,
    each process starts once the previous one answers /health."""
    ids = [f"g{i}" for i in range(n)]
    http = {i: free_port() for i in ids}
    gossip = {i: free_port() for i in ids}
    env = dict(os.environ, HC_CLUSTER_SECRET=secret, HC_WORKER_THREADS="1",
               RUST_LOG="warn,hybrid_cache::gossip::membership=info", NO_COLOR="1")
    procs = {}
    try:
        for i in ids:
            args = [binary, "node", "--node-id", i, "--http", f"127.0.0.1:{http[i]}",
                    "--gossip", f"127.0.0.1:{gossip[i]}"]
            if i != ids[0]:
                args += ["--peers", f"127.0.0.1:{gossip[ids[0]]}"]
            with open(os.path.join(logdir, f"{i}.log"), "w") as log:
                procs[i] = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log)
            if one_by_one:
                wait_ready(http[i], procs[i])
    except BaseException:
        stop(procs.values())
        raise
    return ids, http, procs


def stop(procs):
    """SIGTERM every process still running (by pid), then wait; SIGKILL after 10 s."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
