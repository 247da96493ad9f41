"""Python client of the `hc-testkit` binary (testkit/): the one free-port policy and the one
redis-server command line, shared with the Rust tests and xtask.

    import hc_testkit
    port = hc_testkit.free_port()               # loopback, below the ephemeral range,
                                                # free for TCP and UDP, never 6379,
                                                # never twice in this process
    args = hc_testkit.redis_server_command(port, dir)   # Popen it; stop it by its pid

The binary is $HC_TESTKIT (set by `cargo xtask`), else it is built with cargo
(target/debug/hc-testkit, or under $CARGO_TARGET_DIR).
"""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_binary = None
_taken = []


def binary():
    """Path of the hc-testkit binary (built once when $HC_TESTKIT is not set)."""
    global _binary
    if _binary is None:
        b = os.environ.get("HC_TESTKIT")
        if not b:
            subprocess.run(["cargo", "build", "-q", "-p", "hc-testkit"], cwd=ROOT, check=True)
            target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
            b = os.path.join(target, "debug", "hc-testkit")
        _binary = b
    return _binary


def free_ports(n):
    """n distinct free loopback ports, none handed out before in this process."""
    out = subprocess.run([binary(), "free-port", "--count", str(n),
                          "--avoid", ",".join(map(str, _taken))],
                         check=True, capture_output=True, text=True).stdout
    ports = json.loads(out)["ports"]
    _taken.extend(ports)
    return ports


def free_port():
    """One free loopback port (see free_ports)."""
    return free_ports(1)[0]


def redis_server_command(port, directory, extra=()):
    """argv that becomes (exec) a private redis-server on 127.0.0.1:port, dir `directory`."""
    return [binary(), "redis-server", "--port", str(port), "--dir", directory, "--", *extra]
