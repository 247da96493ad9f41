"""Benchmark of the Python package (not a test: it prints, it asserts nothing timed).

    python python/benches/bench.py [--reps 15] [--ops 20000] [--redis-url URL]

One run prints, per case, the time per call (ns): min / median / max over interleaved
repetitions (every repetition runs each case once, in turn, so drifts of the machine hit
every case alike):

- `@cached` hit: a call of an `@cached(category="permissions")` function whose key is in
  this process's L1 (the cache configured with Redis, lease held: the production read path);
- `HybridCache.get` hit: the static API on the same kind of key;
- `cachetools.TTLCache` lookup: `ttl_cache[key]` with the key already built (the goal: a
  `@cached` hit within 2x of it);
- `cachetools` decorator hit: the original module's L1 read done in Python (key built from
  the arguments, then the TTLCache lookup), for reference;
- redis-py `GET`: one GET of the same value from a local Redis (the goal: a `@cached` hit at
  least 20x faster).

Without --redis-url it starts a private redis-server on a free loopback port (testkit/),
and stops it by its pid at the end.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cachetools
import redis

import hybrid_cache
from hybrid_cache import HybridCache, cached

# The repository root (this file is python/benches/bench.py; it lives outside python/ itself
# so that `python/` on sys.path cannot shadow the installed package with its uncompiled source).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VALUE = {"user": 123, "permissions": ["read", "write", "admin"]}


def start_redis():
    sys.path.insert(0, os.path.join(ROOT, "testkit"))
    import hc_testkit

    port = hc_testkit.free_port()
    d = tempfile.mkdtemp(prefix="hc-bench-redis-")
    proc = subprocess.Popen(hc_testkit.redis_server_command(port, d), stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return proc, d, f"redis://127.0.0.1:{port}/0"
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("redis-server did not start")
            time.sleep(0.05)


def per_call_ns(fn, ops):
    t0 = time.perf_counter_ns()
    fn(ops)
    return (time.perf_counter_ns() - t0) / ops


def cases(url):
    """name -> function(ops) running `ops` calls of that case."""

    @cached(category="permissions")
    def get_user_permissions(user_id):
        return VALUE

    get_user_permissions(123)
    HybridCache.set("bench_key", VALUE, category="permissions")
    assert HybridCache.get("bench_key", category="permissions") == VALUE

    ttl_cache = cachetools.TTLCache(maxsize=500, ttl=600)
    ttl_cache["get_user_permissions:123"] = VALUE

    @cachetools.cached(cachetools.TTLCache(maxsize=500, ttl=600),
                       key=lambda user_id: f"get_user_permissions:{user_id}")
    def original_l1(user_id):
        return VALUE

    original_l1(123)

    r = redis.Redis.from_url(url)
    r.set("bench:get_user_permissions:123", hybrid_cache._json_dumps(VALUE))

    def hc_cached(ops):
        f = get_user_permissions
        for _ in range(ops):
            f(123)

    def hc_get(ops):
        g = HybridCache.get
        for _ in range(ops):
            g("bench_key", category="permissions")

    def ttlcache(ops):
        c = ttl_cache
        for _ in range(ops):
            c["get_user_permissions:123"]

    def ttlcache_decorator(ops):
        f = original_l1
        for _ in range(ops):
            f(123)

    def redis_get(ops):
        g = r.get
        for _ in range(ops):
            g("bench:get_user_permissions:123")

    return {
        "@cached hit (hybrid_cache)": (hc_cached, 1),
        "HybridCache.get hit": (hc_get, 1),
        "cachetools.TTLCache lookup": (ttlcache, 1),
        "cachetools @cached hit (original L1)": (ttlcache_decorator, 1),
        # Network round trips: fewer calls per repetition.
        "redis-py GET (local Redis)": (redis_get, 20),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--redis-url")
    a = ap.parse_args()

    proc = d = None
    url = a.redis_url
    if url is None:
        proc, d, url = start_redis()
    try:
        hybrid_cache.configure(redis_url=url, namespace="bench")
        table = cases(url)
        samples = {name: [] for name in table}
        for _ in range(a.reps):
            for name, (fn, divisor) in table.items():
                samples[name].append(per_call_ns(fn, max(1, a.ops // divisor)))
        report(samples, a)
        hybrid_cache.configure(l1_only=True)
    finally:
        if proc is not None:
            proc.kill()  # ours, by its pid
            proc.wait()
            shutil.rmtree(d, ignore_errors=True)


def report(samples, a):
    print(f"python {sys.version.split()[0]}, {a.reps} interleaved repetitions, "
          f"{a.ops} calls per repetition (redis: {a.ops // 20})")
    print(f"{'case':40} {'min ns':>10} {'median ns':>10} {'max ns':>10}")
    med = {}
    for name, xs in samples.items():
        med[name] = statistics.median(xs)
        print(f"{name:40} {min(xs):10.0f} {med[name]:10.0f} {max(xs):10.0f}")
    hit = med["@cached hit (hybrid_cache)"]
    lo = {name: min(xs) for name, xs in samples.items()}
    print(f"@cached hit / TTLCache lookup (median): {hit / med['cachetools.TTLCache lookup']:.2f}x (goal <= 2x); "
          f"at the minimum: {lo['@cached hit (hybrid_cache)'] / lo['cachetools.TTLCache lookup']:.2f}x")
    print(f"@cached hit / cachetools @cached hit (median): {hit / med['cachetools @cached hit (original L1)']:.2f}x")
    print(f"redis-py GET / @cached hit (median): {med['redis-py GET (local Redis)'] / hit:.1f}x faster (goal >= 20x)")


if __name__ == "__main__":
    main()
