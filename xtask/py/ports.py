"""Free loopback ports and the redis-server command line for the Python programs under
xtask/py/ (gossip_procs.py, ui_test.py, bench_node.py): the one implementation is the
hc-testkit crate (testkit/), reached through its Python client testkit/hc_testkit.py.
Policy: loopback, below the ephemeral range, free for TCP and UDP, never 6379, never the
same port twice in one process."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "testkit"))

from hc_testkit import free_port, free_ports, redis_server_command  # noqa: E402,F401
