"""The RESP front end through redis-py, a common client library (run by `cargo xtask test`).

Starts its own node (the debug binary, or $HC_BIN) with --resp on free loopback ports and
an API token, then drives it as any Python service would: RESP2 and RESP3, pipelines,
errors, AUTH. Standard library unittest only, plus the `redis` package.
"""

import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("HC_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "hybrid-cache"))
TOKEN = "py-s3cret"


# Free ports from the shared test harness (testkit/: loopback, below the ephemeral range,
# never 6379, never twice).
sys.path.insert(0, os.path.join(ROOT, "testkit"))
from hc_testkit import free_port  # noqa: E402


class RedisPyAgainstNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.http_port, cls.resp_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HC_", "REDIS_"))}
        env["HC_API_TOKEN"] = TOKEN
        env["HC_RESP"] = f"127.0.0.1:{cls.resp_port}"
        cls.node = subprocess.Popen(
            [BIN, "node", "--http", f"127.0.0.1:{cls.http_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", cls.resp_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or cls.node.poll() is not None:
                    cls.node.kill()
                    raise RuntimeError("node did not start")
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.node.terminate()
        try:
            cls.node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.node.kill()

    def client(self, **kw):
        kw.setdefault("password", TOKEN)
        return redis.Redis(host="127.0.0.1", port=self.resp_port, socket_timeout=10, **kw)

    def test_commands_resp2_and_resp3(self):
        for proto in (2, 3):
            with self.subTest(protocol=proto):
                r = self.client(protocol=proto)
                self.assertTrue(r.ping())
                self.assertTrue(r.set(f"roles/p{proto}", b"admin", ex=60))
                self.assertEqual(r.get(f"roles/p{proto}"), b"admin")
                self.assertIsNone(r.get("roles/absent"))
                self.assertEqual(r.mget([f"roles/p{proto}", "roles/absent"]), [b"admin", None])
                self.assertEqual(r.exists(f"roles/p{proto}", "roles/absent"), 1)
                self.assertEqual(r.delete(f"roles/p{proto}"), 1)
                self.assertIsNone(r.get(f"roles/p{proto}"))
                r.client_setname("py-test")
                name = r.client_getname()
                self.assertEqual(name if isinstance(name, bytes) else name.encode(), b"py-test")
                self.assertGreater(r.client_id(), 0)
                self.assertIn("redis_version", r.info())
                r.close()

    def test_pipeline(self):
        r = self.client()
        p = r.pipeline(transaction=False)
        for i in range(100):
            p.set(f"general/k{i}", f"v{i}")
            p.get(f"general/k{i}")
        out = p.execute()
        self.assertEqual(out[0::2], [True] * 100)
        self.assertEqual(out[1::2], [f"v{i}".encode() for i in range(100)])

    def test_binary_values_round_trip_and_reach_http(self):
        r = self.client()
        value = bytes(range(256)) * 4
        r.set("prompts/bin", value)
        self.assertEqual(r.get("prompts/bin"), value)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v1/cache/prompts/bin") as resp:
            self.assertEqual(resp.read(), value)
            self.assertEqual(resp.headers["x-cache"], "L1")

    def test_errors(self):
        r = self.client()
        with self.assertRaisesRegex(redis.ResponseError, "unknown category `nope`"):
            r.get("nope/k")
        with self.assertRaisesRegex(redis.ResponseError, "expected `category/key`"):
            r.get("plain-key")
        with self.assertRaisesRegex(redis.ResponseError, "exceeds the limit"):
            r.set("general/" + "k" * 600, "v")

    def test_auth(self):
        anon = self.client(password=None)
        self.assertIsNone(anon.get("general/x"))  # reads are open, as on HTTP
        with self.assertRaises(redis.AuthenticationError):
            anon.set("general/x", "1")
        with self.assertRaises(redis.AuthenticationError):
            self.client(password="wrong").ping()
        with self.assertRaises(redis.AuthenticationError):
            self.client(password="wrong", protocol=3).ping()


if __name__ == "__main__":
    unittest.main()
