"""Free loopback ports for the Python scripts that start nodes (gossip_procs.py, ui-test.py,
bench_node.py)."""
import random
import socket

_taken = set()


def free_port():
    """A loopback port that is free for both TCP and UDP (so it serves an HTTP or a gossip
    address alike), chosen below the
    ephemeral range: nodes bind their SWIM sockets on ephemeral ports, which could otherwise
    take a port chosen here before its node starts. Never 6379, never the same port twice in
    one process."""
    while True:
        p = random.randrange(20000, 32000)
        if p in _taken:
            continue
        try:
            for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, k) as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        _taken.add(p)
        return p
