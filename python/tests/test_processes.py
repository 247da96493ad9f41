"""Two worker processes on one Redis stay coherent: a write, delete or invalidation in one
is seen by the other within the staleness bound B. And L1-only mode from the environment."""

import time

from conftest import BOUND_MS, clean_env

ROUNDS = 20


def redis_env(redis_port, ns):
    env = clean_env()
    # The original module's variables, not REDIS_URL: the same environment as before.
    env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(redis_port), REDIS_DB="0",
               HC_NAMESPACE=ns, HC_STALENESS_BOUND_MS=str(BOUND_MS))
    return env


def after_bound():
    """A read that starts now + B + margin must see every change acknowledged before now."""
    time.sleep(BOUND_MS / 1000 + 0.02)


def test_a_write_in_one_process_is_read_in_the_other_within_the_bound(redis_port, workers):
    env = redis_env(redis_port, "coh1")
    a, b = workers(env), workers(env)
    assert a("node_id") != b("node_id")  # one node per process
    assert a("stats")["l2_enabled"] is True and b("stats")["l2_enabled"] is True
    for i in range(ROUNDS):
        a("set", "k", {"v": i}, "general")          # acknowledged here
        if i % 2 == 0:
            # b reads it right away too: its L1 then holds the value the next round replaces.
            assert b("get", "k", "general") in ({"v": i}, {"v": i - 1})
        after_bound()
        assert b("get", "k", "general") == {"v": i}
        after_bound()
        assert a("get", "k", "general") == {"v": i}
    a("delete", "k", "general")
    after_bound()
    assert b("get", "k", "general") is None


def test_an_invalidation_in_one_process_reaches_cached_functions_in_the_other(redis_port, workers):
    env = redis_env(redis_port, "coh2")
    a, b = workers(env), workers(env)
    b("db", 9, ["read"])
    assert b("perms", 9) == ["read"]
    assert b("perms", 9) == ["read"]
    assert b("loads") == 1
    # The data changes; a process invalidates the key (like the original's users did).
    b("db", 9, ["read", "write"])
    a("invalidate", "get_user_permissions:9", "permissions")
    after_bound()
    assert b("perms", 9) == ["read", "write"]
    assert b("loads") == 2
    # Whole category.
    b("db", 9, ["none"])
    a("invalidate", "*", "permissions")
    after_bound()
    assert b("perms", 9) == ["none"]
    # A write in b is read by a's cached function from L2 (a's loader never runs).
    b("db", 10, ["x"])
    assert b("perms", 10) == ["x"]
    assert a("perms", 10) == ["x"]
    assert a("loads") == 0


def test_l1_only_when_no_redis_is_configured(workers):
    env = clean_env()
    a, b = workers(env), workers(env)
    assert a("stats")["l2_enabled"] is False
    h = a("health")
    assert h["l1_enabled"] is True and h["l2_redis_enabled"] is False
    a("set", "k", [1], "general")
    assert a("get", "k", "general") == [1]
    # Each process has its own L1 and nothing else.
    assert b("get", "k", "general") is None
    assert a("perms", 1) == ["read"] and a("perms", 1) == ["read"] and a("loads") == 1
