"""Start and stop a cluster of real node processes for the gossip scripts.

Shared by bench_gossip.py and soak_gossip.py (`cargo xtask bench gossip`, `cargo xtask soak gossip`): both run N release-build
nodes (L1 only, no TLS, loopback gossip sealed with a cluster secret, 1 worker thread each),
every node but the first joining through the first one, with each node's log in LOGDIR/ID.log.
"""
import os
import signal
import subprocess

from ports import free_port


def start_cluster(binary, n, logdir, secret):
    """Start n nodes g0..g{n-1}; returns (ids, http ports, processes by id)."""
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
