"""Shared fixtures: a private redis-server on a free loopback port (testkit/, never 6379),
worker processes driven over stdin/stdout, and a clean cache per test."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "testkit"))
import hc_testkit  # noqa: E402

import hybrid_cache  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND_MS = 100


def clean_env():
    """The environment without any Redis or HC_* setting of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HC_"))}


@pytest.fixture(scope="session")
def redis_port():
    port = hc_testkit.free_port()
    d = tempfile.mkdtemp(prefix="hc-py-redis-")
    proc = subprocess.Popen(hc_testkit.redis_server_command(port, d), stdout=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()  # ours, by its pid
        proc.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def redis_url(redis_port, request):
    # One namespace per test: tests never see each other's keys.
    return f"redis://127.0.0.1:{redis_port}/0", "t" + str(abs(hash(request.node.nodeid)) % 10**9)


@pytest.fixture
def l1_only():
    hybrid_cache.configure(l1_only=True)
    yield
    hybrid_cache.configure(l1_only=True)


@pytest.fixture
def with_redis(redis_url):
    url, ns = redis_url
    hybrid_cache.configure(redis_url=url, namespace=ns, staleness_bound_ms=BOUND_MS)
    yield url, ns
    hybrid_cache.configure(l1_only=True)


class Worker:
    """A Python process running tests/worker.py: one JSON command per line, one JSON answer."""

    def __init__(self, env):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py")],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def __call__(self, *cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.proc.poll()}) on {cmd}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"worker: {answer['error']}")
        return answer["ok"]

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workers():
    started = []

    def start(env):
        w = Worker(env)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()
