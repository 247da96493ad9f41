"""Issue #26's near-cache features through the Python package, as a user sees them: category
settings from configure() and from a cluster.toml, tags, negative caching, fail-safe,
refresh-ahead, TTL jitter and warm-up. Against a private redis-server, with worker processes
(tests/worker.py, configured by HC_CONFIG) where "every process" matters."""

import contextvars
import threading
import time

import pytest
import redis

import hybrid_cache
from conftest import BOUND_MS, clean_env
from hybrid_cache import (
    ConfigError,
    HybridCache,
    InvalidPatternError,
    InvalidTagError,
    LoaderError,
    cache_stats,
    cached,
    invalidate_cache,
)

# The categories of the worker processes (their HC_CONFIG file).
WORKER_TOML = """
[categories.users]
ttl_secs = 600
max_entries = 1000
negative_ttl_secs = 30

[categories.fresh]
ttl_secs = 60
max_entries = 1000
refresh_after_secs = 1

[categories.prices]
ttl_secs = 1
max_entries = 1000
fail_safe_max_age_secs = 3600

[categories.hot]
ttl_secs = 600
max_entries = 1000
warm_up_keys = 3
warm_up_sample_ms = 100

# For nodes only: ignored by the Python package (each process has its own id).
[[nodes]]
id = "n1"
http = "127.0.0.1:8080"
gossip = "127.0.0.1:7946"
"""


def after_bound():
    """A read that starts now sees every change acknowledged before now minus B."""
    time.sleep(BOUND_MS / 1000 + 0.05)


def settle(*ws):
    """After starting processes: each flushes its L1 at its subscription and again at its
    first contact with the other (heartbeats); entries read before that are gone again."""
    def flushes():
        return [w("full_stats")["counters"]["coherence_flushes"] for w in ws]
    wait_until(lambda: all(n >= 2 for n in flushes()), what="the first contact of the processes")
    time.sleep(0.3)


def wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def counters():
    return HybridCache.stats()["counters"]


@pytest.fixture
def near(redis_url):
    """configure(categories=...) on the test's private Redis namespace."""
    url, ns = redis_url

    def configure(**categories):
        hybrid_cache.configure(redis_url=url, namespace=ns, staleness_bound_ms=BOUND_MS, categories=categories)
        return url, ns

    yield configure
    hybrid_cache.configure(l1_only=True)


@pytest.fixture
def worker_env(redis_port, redis_url, tmp_path):
    """The environment of worker processes sharing the test's Redis namespace."""
    _, ns = redis_url
    path = tmp_path / "cluster.toml"
    path.write_text(WORKER_TOML)
    env = clean_env()
    env.update(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", HC_NAMESPACE=ns,
               HC_STALENESS_BOUND_MS=str(BOUND_MS), HC_CONFIG=str(path))
    return env


def l2_key(ns, category, key):
    return f"{ns}:{category}:0:{key}"


# ---------------------------------------------------------------------------------------
# 1. Category settings


USERS = {
    "ttl_secs": 600, "max_entries": 5000, "refresh_after_secs": 480, "negative_ttl_secs": 30,
    "fail_safe_max_age_secs": 3600, "load_soft_timeout_ms": 250, "load_timeout_ms": 5000,
    "ttl_jitter": 0.1, "warm_up_keys": 100,
}


def test_categories_from_configure(l1_only):
    hybrid_cache.configure(l1_only=True, categories={"users": USERS})
    stats = cache_stats()["l1_caches"]
    assert stats["users"] == {"size": 0, "maxsize": 5000, "ttl": 600}
    assert stats["permissions"]["ttl"] == 600  # the seed categories stay
    HybridCache.set("u1", {"name": "ann"}, category="users")
    assert HybridCache.get("u1", category="users") == {"name": "ann"}


@pytest.mark.parametrize("change, field", [
    ({"ttl_jitter": 1.5}, "categories.users.ttl_jitter"),
    ({"refresh_after_secs": 600}, "categories.users.refresh_after_secs"),
    ({"negative_ttl_secs": 0}, "categories.users.negative_ttl_secs"),
    ({"fail_safe_max_age_secs": None, "load_soft_timeout_ms": 100}, "categories.users.load_soft_timeout_ms"),
    ({"warm_up_keys": 20000}, "categories.users.warm_up_keys"),
    ({"ttl_jiter": 0.1}, "ttl_jiter"),            # a misspelt setting
    ({"max_entries": None}, "max_entries"),       # a required one missing
    ({"ttl_secs": "600"}, "categories.users"),    # a wrong type
])
def test_a_bad_category_setting_raises_config_error_naming_it(l1_only, change, field):
    hybrid_cache.configure(l1_only=True, categories={"users": USERS})
    bad = {k: v for k, v in {**USERS, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
        hybrid_cache.configure(l1_only=True, categories={"users": bad})
    assert e.value.code == "config"
    # Nothing changed: the previous settings still serve.
    assert cache_stats()["l1_caches"]["users"]["maxsize"] == 5000


def test_categories_from_a_config_file(l1_only, tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text(WORKER_TOML)
    hybrid_cache.configure(l1_only=True, config_file=path)
    stats = cache_stats()["l1_caches"]
    assert stats["prices"] == {"size": 0, "maxsize": 1000, "ttl": 1}
    assert stats["hot"]["ttl"] == 600
    # configure(categories=...) over the file's.
    hybrid_cache.configure(l1_only=True, config_file=str(path),
                           categories={"prices": {"ttl_secs": 5, "max_entries": 10}})
    assert cache_stats()["l1_caches"]["prices"] == {"size": 0, "maxsize": 10, "ttl": 5}

    bad = tmp_path / "bad.toml"
    bad.write_text("[categories.users]\nttl_secs = 60\nmax_entries = 10\nttl_jitter = 2.0\n")
    with pytest.raises(ConfigError, match=r"categories\.users\.ttl_jitter"):
        hybrid_cache.configure(l1_only=True, config_file=bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        hybrid_cache.configure(l1_only=True, config_file=tmp_path / "missing.toml")


# ---------------------------------------------------------------------------------------
# 2. Tags


def test_a_tag_invalidation_removes_every_tagged_entry_in_every_process(near, workers, worker_env):
    near()
    a, b = workers(worker_env), workers(worker_env)
    settle(a, b)
    a("set_tagged", "perms:123", ["read"], "permissions", ["user:123", "tenant:7"])
    a("set_tagged", "menu:123", ["home"], "menus", ["user:123"])
    a("set_tagged", "perms:124", ["admin"], "permissions", ["user:124"])
    a("set", "roles:123", ["r"], "roles")                      # untagged
    for key, cat in [("perms:123", "permissions"), ("menu:123", "menus"),
                     ("perms:124", "permissions"), ("roles:123", "roles")]:
        assert b("get", key, cat) is not None
        assert b("in_l1", cat, key)[0]                           # held in b's L1

    # This process (a third one, which never read them) invalidates the tag.
    invalidate_cache(tag="user:123")
    after_bound()
    assert b("get", "perms:123", "permissions") is None
    assert b("get", "menu:123", "menus") is None
    assert a("get", "perms:123", "permissions") is None
    assert HybridCache.get("menu:123", category="menus") is None  # gone from L2 too
    assert b("get", "perms:124", "permissions") == ["admin"]       # another tag
    assert b("get", "roles:123", "roles") == ["r"]                 # untagged

    # A later write replaces the tags: rewritten without the tag, the key survives it.
    a("set", "perms:123", ["read", "write"], "permissions")
    assert HybridCache.invalidate_tag("user:123") == 0
    after_bound()
    assert b("get", "perms:123", "permissions") == ["read", "write"]
    a("invalidate_tag", "tenant:7")
    after_bound()
    assert b("get", "perms:123", "permissions") == ["read", "write"]


def test_bad_tags_are_refused_and_nothing_is_written(l1_only):
    for tags in (["a b"], [""], ["x" * 129], [f"t{i}" for i in range(17)]):
        with pytest.raises(InvalidTagError) as e:
            HybridCache.set("k", 1, tags=tags)
        assert isinstance(e.value, InvalidPatternError) and e.value.code == "invalid_tag"
        assert HybridCache.get("k") is None
    with pytest.raises(InvalidTagError):
        invalidate_cache(tag="no spaces")
    with pytest.raises(TypeError):
        HybridCache.set("k", 1, tags="user:1")  # a str, not a list of tags
    with pytest.raises(ValueError):
        invalidate_cache("k", tag="user:1")
    HybridCache.set("k", 1, tags=["user:1"])
    assert HybridCache.get("k") == 1
    assert invalidate_cache(tag="user:1") == 1
    assert HybridCache.get("k") is None


# ---------------------------------------------------------------------------------------
# 3. Negative caching


def test_none_is_a_cached_not_found_with_negative_ttl(near, workers, worker_env, redis_port):
    _, ns = near()
    a, b = workers(worker_env), workers(worker_env)
    assert a("user", 9) is None
    assert a("user", 9) is None
    assert a("loads_of", "users") == 1                 # cached: the loader ran once
    assert b("user", 9) is None
    assert b("loads_of", "users") == 0                 # shared through L2
    assert b("get", "find_user:9", "users") is None    # a miss for get too
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    assert 0 < r.pttl(l2_key(ns, "users", "find_user:9")) <= 30_000  # negative_ttl_secs
    assert a("full_stats")["counters"]["negative_hits"] >= 1
    # A write in another process replaces the "not found" everywhere within B.
    b("set", "find_user:9", {"name": "ann"}, "users")
    after_bound()
    assert a("user", 9) == {"name": "ann"}
    assert a("loads_of", "users") == 1


def test_none_is_a_value_without_negative_ttl_and_not_found_expires(l1_only):
    hybrid_cache.configure(l1_only=True, categories={
        "neg": {"ttl_secs": 60, "max_entries": 100, "negative_ttl_secs": 1},
    })
    calls = []

    @cached(category="general")
    def plain(n):
        calls.append(n)
        return None

    @cached(category="neg")
    def lookup(n):
        calls.append(n)
        return None

    # Unchanged in a category without the setting: None is a JSON value, cached for the TTL.
    assert plain(1) is None and plain(1) is None
    assert calls == [1]
    assert HybridCache.get("plain:1") is None and HybridCache.stats()["l1_caches"]["general"]["size"] == 1
    # With it: a "not found" for negative_ttl_secs, then the loader is asked again.
    assert lookup(2) is None and lookup(2) is None
    assert calls == [1, 2]
    time.sleep(1.2)
    assert lookup(2) is None
    assert calls == [1, 2, 2]
    assert HybridCache.get_or_load("lookup:3", lambda: None, category="neg") is None
    assert HybridCache.get_or_load_marked("lookup:3", lambda: 1 / 0, category="neg") == (None, False)


# ---------------------------------------------------------------------------------------
# 4. Fail-safe


class DbDown(Exception):
    pass


def price_function(db):
    @cached(category="prices")
    def get_price(sku):
        if db.get("down"):
            raise DbDown("database down")
        time.sleep(db.get("slow", 0))
        return db[sku]
    return get_price


def test_fail_safe_answers_the_last_value_marked_stale(near):
    near(prices={"ttl_secs": 1, "max_entries": 100, "fail_safe_max_age_secs": 3600})
    db = {"sku1": 9.99}
    get_price = price_function(db)
    assert get_price.marked("sku1") == (9.99, False)
    time.sleep(1.2)                       # L1 and L2 expired
    db["down"] = True
    assert get_price.marked("sku1") == (9.99, True)
    assert get_price("sku1") == 9.99
    assert HybridCache.get_or_load_marked("get_price:sku1", lambda: 1 / 0, category="prices") == (9.99, True)
    assert counters()["fail_safe_hits"] >= 3
    with pytest.raises(DbDown):           # no last value: the loader's exception
        get_price("sku2")
    db["down"] = False
    db["sku1"] = 10.5
    assert get_price.marked("sku1") == (10.5, False)


def test_fail_safe_never_answers_a_value_invalidated_in_another_process(near, workers, worker_env):
    near(prices={"ttl_secs": 1, "max_entries": 100, "fail_safe_max_age_secs": 3600})
    other = workers(worker_env)
    db = {"sku1": 9.99, "sku2": 5.0}
    get_price = price_function(db)
    assert get_price("sku1") == 9.99 and get_price("sku2") == 5.0
    time.sleep(1.2)
    db["down"] = True
    assert get_price.marked("sku2") == (5.0, True)
    other("invalidate", "get_price:sku1", "prices")
    other("delete", "get_price:sku2", "prices")
    after_bound()
    with pytest.raises(DbDown):
        get_price.marked("sku1")
    with pytest.raises(DbDown):
        get_price("sku2")


def test_a_slow_loader_answers_the_fail_safe_value_at_the_soft_timeout(near):
    near(prices={"ttl_secs": 1, "max_entries": 100, "fail_safe_max_age_secs": 3600,
                 "load_soft_timeout_ms": 200, "load_timeout_ms": 5000},
         strict_timeout={"ttl_secs": 60, "max_entries": 100, "load_timeout_ms": 300})
    db = {"sku1": 9.99}
    get_price = price_function(db)
    assert get_price("sku1") == 9.99
    time.sleep(1.2)
    db["slow"] = 1.5
    t = time.monotonic()
    assert get_price.marked("sku1") == (9.99, True)
    assert time.monotonic() - t < 1.2

    # The hard timeout without a last value: an error naming load_timeout_ms.
    @cached(category="strict_timeout")
    def slow():
        time.sleep(1.5)
        return 1

    t = time.monotonic()
    with pytest.raises(LoaderError, match="load_timeout_ms"):
        slow()
    assert time.monotonic() - t < 1.2


def test_a_loader_on_a_worker_thread_sees_the_callers_contextvars(near):
    near(prices={"ttl_secs": 60, "max_entries": 100, "fail_safe_max_age_secs": 3600})
    request_id = contextvars.ContextVar("request_id", default=None)
    seen = []

    @cached(category="prices")
    def price(sku):
        seen.append((request_id.get(), threading.get_ident()))
        return 1

    request_id.set("req-42")
    assert price("x") == 1
    assert seen[0][0] == "req-42"
    assert seen[0][1] != threading.get_ident()  # ran off the calling thread (timeouts apply)


# ---------------------------------------------------------------------------------------
# 5. Refresh-ahead


def test_refresh_ahead_answers_at_once_and_reloads_in_the_background(near):
    near(fresh={"ttl_secs": 60, "max_entries": 100, "refresh_after_secs": 1})
    db, calls = {"k": "v1"}, []
    slow = {"s": 0.0}

    @cached(category="fresh")
    def load(k):
        calls.append(k)
        time.sleep(slow["s"])
        return db[k]

    assert load("k") == "v1" and load("k") == "v1"
    assert len(calls) == 1                 # a hit younger than refresh_after
    time.sleep(1.1)
    db["k"], slow["s"] = "v2", 0.5
    t = time.monotonic()
    assert load("k") == "v1"               # answered at once...
    assert time.monotonic() - t < 0.4
    assert load("k") == "v1"               # ...one reload at a time
    wait_until(lambda: load("k") == "v2", what="the reloaded value")
    assert len(calls) == 2
    assert HybridCache.get("load:k", category="fresh") == "v2"   # through the write path (L2)
    c = counters()
    assert c["refreshes_started"] == 1 and c["refreshes_won"] == 1 and c["refreshes_failed"] == 0


def test_refresh_ahead_reloads_once_for_two_processes(near, workers, worker_env):
    near()
    a, b = workers(worker_env), workers(worker_env)
    settle(a, b)
    for w in (a, b):
        w("users_db", 1, "v1")
    assert a("fresh", 1) == "v1"
    assert b("fresh", 1) == "v1"           # from L2
    assert a("loads_of", "fresh") + b("loads_of", "fresh") == 1
    time.sleep(1.2)
    assert [w("full_stats")["l1_caches"]["fresh"]["size"] for w in (a, b)] == [1, 1]
    for w in (a, b):
        w("users_db", 1, "v2")
        w("delay", 0.5)
    assert a("fresh", 1) == "v1" and b("fresh", 1) == "v1"   # both past refresh_after
    wait_until(lambda: a("fresh", 1) == "v2" and b("fresh", 1) == "v2", what="v2 in both")
    assert a("loads_of", "fresh") + b("loads_of", "fresh") == 2  # one reload in total
    sa, sb = a("full_stats")["counters"], b("full_stats")["counters"]
    assert sa["refreshes_won"] + sb["refreshes_won"] == 1
    assert sa["refreshes_lost"] + sb["refreshes_lost"] == 1


def test_a_reload_raced_by_an_invalidation_is_never_served(near):
    near(fresh={"ttl_secs": 60, "max_entries": 100, "refresh_after_secs": 1})
    db = {"k": "v1"}
    started, gate = threading.Event(), threading.Event()
    gate.set()

    @cached(category="fresh")
    def load(k):
        value = db[k]
        started.set()
        gate.wait(timeout=30)
        return value

    assert load("k") == "v1"
    time.sleep(1.1)
    db["k"] = "v2"
    started.clear()
    gate.clear()
    assert load("k") == "v1"               # the reload starts, reads v2, waits
    assert started.wait(timeout=10)
    db["k"] = "v3"
    invalidate_cache("load:k", category="fresh")
    gate.set()
    wait_until(lambda: counters()["refreshes_discarded"] == 1, what="the reload discarded")
    assert load("k") == "v3"               # never v2
    # Cached although the key was invalidated a moment ago (the load replaced the
    # invalidation's tombstone in L2), and never v2.
    assert HybridCache.get("load:k", category="fresh") == "v3"


# ---------------------------------------------------------------------------------------
# 6. TTL jitter and warm-up


def test_ttl_jitter_spreads_the_redis_ttls_of_keys_written_together(near, redis_port):
    _, ns = near(jit={"ttl_secs": 100, "max_entries": 1000, "ttl_jitter": 0.5},
                 flat={"ttl_secs": 100, "max_entries": 1000})
    r = redis.Redis(host="127.0.0.1", port=redis_port)
    for i in range(40):
        HybridCache.set(f"k{i}", i, category="jit")
        HybridCache.set(f"k{i}", i, category="flat")
    jit = [r.pttl(l2_key(ns, "jit", f"k{i}")) for i in range(40)]
    flat = [r.pttl(l2_key(ns, "flat", f"k{i}")) for i in range(40)]
    assert all(45_000 <= t <= 100_000 for t in jit), jit     # [ttl·(1−j), ttl]
    assert max(jit) - min(jit) > 10_000, jit                 # spread
    assert all(95_000 <= t <= 100_000 for t in flat), flat    # off: all alike

    @cached(category="jit")
    def loaded():
        return 1

    assert loaded() == 1
    assert 45_000 <= r.pttl(l2_key(ns, "jit", "loaded")) <= 100_000


def test_warm_up_preloads_the_hottest_keys_in_a_process_started_later(near, workers, worker_env):
    near()
    a = workers(worker_env)
    for i in range(8):
        a("set", f"k{i}", {"n": i}, "hot")
    for _ in range(30):
        for i in range(3):
            assert a("get", f"k{i}", "hot") == {"n": i}      # k0..k2 are hot
    for i in range(3, 8):
        assert a("get", f"k{i}", "hot") == {"n": i}
    time.sleep(0.5)                                          # a few samples of a's ranking
    b = workers(worker_env)
    settle(a, b)                                             # b warms after each flush

    def warmed():
        hot = b("full_stats")["l1_caches"]["hot"]
        return hot["warmed"] >= 3 and hot["size"] == 3
    wait_until(warmed, what="b's warm-up")
    for i in range(3):
        assert b("in_l1", "hot", f"k{i}") == [True, {"n": i}]
    assert b("in_l1", "hot", "k3") == [False, None]


# ---------------------------------------------------------------------------------------
# async def functions


def test_async_functions_get_fail_safe_and_refresh_ahead(near):
    import asyncio

    near(prices={"ttl_secs": 1, "max_entries": 100, "fail_safe_max_age_secs": 3600},
         fresh={"ttl_secs": 60, "max_entries": 100, "refresh_after_secs": 1})
    db, calls = {"p": 1.0, "f": "v1"}, []

    @cached(category="prices")
    async def price(k):
        calls.append(k)
        if db.get("down"):
            raise DbDown("down")
        return db[k]

    @cached(category="fresh")
    async def fresh(k):
        calls.append(k)
        await asyncio.sleep(0.3)
        return db[k]

    async def main():
        assert await price.marked("p") == (1.0, False)
        assert await fresh("f") == "v1"
        await asyncio.sleep(1.2)
        db["down"], db["f"] = True, "v2"
        assert await price.marked("p") == (1.0, True)
        assert await price("p") == 1.0
        t = time.monotonic()
        assert await fresh("f") == "v1"             # at once, reloaded on this loop
        assert time.monotonic() - t < 0.25
        for _ in range(100):
            if await fresh("f") == "v2":
                break
            await asyncio.sleep(0.05)
        assert await fresh("f") == "v2"

    asyncio.run(main())
    assert calls.count("f") == 2
