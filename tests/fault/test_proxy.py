"""Self-test of the fault proxy (proxy.py) against a local echo server: pass, blackhole
(connection open, nothing flows, bytes delivered after healing), slow, reset."""

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


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        self.proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "proxy.py"), str(port),
                                       "a", "b"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
        self.server.shutdown()
        self.server.server_close()

    def mode(self, name, mode):
        self.proxy.stdin.write(f"{name} {mode}\n")
        self.proxy.stdin.flush()
        self.assertEqual(self.proxy.stdout.readline().strip(), "ok")

    def connect(self, name="a"):
        s = socket.create_connection(("127.0.0.1", self.ports[name]), timeout=5)
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


if __name__ == "__main__":
    unittest.main()
