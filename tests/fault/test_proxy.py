"""Self-test of the fault proxy (proxy.py) against a local echo server: pass, blackhole
(connection open, nothing flows, bytes delivered after healing), slow, reset, cut (only one
source address blackholed), a proxy with its own upstream port."""

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data)


class Upper(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data:
                return
            self.request.sendall(data.upper())


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        self.other = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Upper)
        self.other.daemon_threads = True
        threading.Thread(target=self.other.serve_forever, daemon=True).start()
        own = f"c:{self.other.server_address[1]}"
        self.proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "proxy.py"), str(port),
                                       "a", "b", own], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
        ready = self.proxy.stdout.readline().split()
        self.assertEqual(ready[0], "ready")
        self.ports = {k: int(v) for k, v in (x.split("=") for x in ready[1:])}

    def tearDown(self):
        self.proxy.stdin.close()
        try:
            self.proxy.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proxy.kill()
            self.proxy.wait()
        for server in (self.server, self.other):
            server.shutdown()
            server.server_close()

    def mode(self, name, mode):
        self.proxy.stdin.write(f"{name} {mode}\n")
        self.proxy.stdin.flush()
        self.assertEqual(self.proxy.stdout.readline().strip(), "ok")

    def connect(self, name="a", source="127.0.0.1"):
        s = socket.create_connection(("127.0.0.1", self.ports[name]), timeout=5,
                                     source_address=(source, 0))
        self.addCleanup(s.close)
        return s

    def roundtrip(self, s, data):
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got

    def test_pass_and_blackhole_holds_bytes_until_healed(self):
        s = self.connect()
        self.assertEqual(self.roundtrip(s, b"one"), b"one")
        self.mode("a", "blackhole")
        s.sendall(b"two")
        s.settimeout(0.5)
        with self.assertRaises(TimeoutError):
            s.recv(10)  # open, but nothing comes back
        other = self.connect("b")  # the other proxy is unaffected
        self.assertEqual(self.roundtrip(other, b"x"), b"x")
        self.mode("a", "pass")
        s.settimeout(5)
        self.assertEqual(s.recv(10), b"two")

    def test_slow_adds_250ms_each_way(self):
        s = self.connect()
        self.assertEqual(self.roundtrip(s, b"warm"), b"warm")
        self.mode("a", "slow")
        t = time.monotonic()
        self.assertEqual(self.roundtrip(s, b"slow"), b"slow")
        self.assertGreaterEqual(time.monotonic() - t, 0.49)

    def test_reset_closes_current_connections_only(self):
        s = self.connect()
        self.assertEqual(self.roundtrip(s, b"1"), b"1")
        self.mode("a", "reset")
        try:
            self.assertEqual(s.recv(10), b"")
        except ConnectionResetError:
            pass
        s2 = self.connect()
        self.assertEqual(self.roundtrip(s2, b"again"), b"again")

    def test_cut_blackholes_one_source_address_only(self):
        cut = self.connect(source="127.0.0.2")
        kept = self.connect(source="127.0.0.1")
        self.assertEqual(self.roundtrip(cut, b"before"), b"before")
        self.mode("a", "cut=127.0.0.2")
        cut.sendall(b"held")
        cut.settimeout(0.5)
        with self.assertRaises(TimeoutError):
            cut.recv(10)  # open, but nothing comes back
        self.assertEqual(self.roundtrip(kept, b"still"), b"still")
        fresh = self.connect(source="127.0.0.2")  # a new connection from it is held too
        fresh.sendall(b"new")
        fresh.settimeout(0.5)
        with self.assertRaises(TimeoutError):
            fresh.recv(10)
        self.mode("a", "pass")
        cut.settimeout(5)
        fresh.settimeout(5)
        self.assertEqual(cut.recv(10), b"held")
        self.assertEqual(fresh.recv(10), b"new")

    def test_a_proxy_with_its_own_upstream(self):
        self.assertEqual(self.roundtrip(self.connect("c"), b"abc"), b"ABC")
        self.assertEqual(self.roundtrip(self.connect("a"), b"abc"), b"abc")


if __name__ == "__main__":
    unittest.main()
