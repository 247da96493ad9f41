"""Single flight per key per process: concurrent misses run the loader once; its exception
reaches every waiting caller and nothing is cached. The GIL is released while waiting."""

import threading
import time

import pytest

from hybrid_cache import HybridCache, cached

THREADS = 8


def run_concurrently(fn, *args):
    """Calls fn(*args) from THREADS threads at once; returns (results, exceptions)."""
    results, errors = [], []
    barrier = threading.Barrier(THREADS)

    def call():
        barrier.wait()
        try:
            results.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 - collected for the test
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a caller never returned"
    return results, errors


def slow_loader(calls, release, outcome):
    def loader(user_id):
        calls.append(user_id)
        # Every caller has reached the cache by now; they wait for this one load.
        release.wait(timeout=30)
        return outcome(user_id)
    return loader


def start_release_after(release, delay=0.5):
    threading.Timer(delay, release.set).start()


@pytest.mark.parametrize("mode", ["l1_only", "with_redis"])
def test_concurrent_misses_run_the_loader_once(mode, request):
    request.getfixturevalue(mode)
    calls, release = [], threading.Event()

    @cached(category="roles")
    def get_roles(user_id):
        return slow_loader(calls, release, lambda u: ["admin", u])(user_id)

    start_release_after(release)
    results, errors = run_concurrently(get_roles, 42)
    assert errors == []
    assert calls == [42]
    assert results == [["admin", 42]] * THREADS


@pytest.mark.parametrize("mode", ["l1_only", "with_redis"])
def test_a_loader_exception_reaches_every_waiter_and_nothing_is_cached(mode, request):
    request.getfixturevalue(mode)
    calls, release = [], threading.Event()

    class DbDown(Exception):
        pass

    def fail(user_id):
        raise DbDown(f"db down for {user_id}")

    @cached(category="permissions")
    def get_perms(user_id):
        return slow_loader(calls, release, fail)(user_id)

    start_release_after(release)
    results, errors = run_concurrently(get_perms, 7)
    assert results == []
    assert len(errors) == THREADS
    assert all(isinstance(e, DbDown) and str(e) == "db down for 7" for e in errors)
    assert calls == [7]  # one load for every caller
    assert HybridCache.get("get_perms:7", category="permissions") is None
    # Nothing cached: the next call loads again, and may succeed.
    release.set()
    with pytest.raises(DbDown):
        get_perms(7)
    assert calls == [7, 7]


def test_the_gil_is_released_while_waiting_for_a_load(l1_only):
    release = threading.Event()
    ticks = []

    @cached(category="general")
    def slow(x):
        release.wait(timeout=30)
        return x

    def ticker():
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            ticks.append(1)
            time.sleep(0.01)

    # Two callers of one key: the second waits inside the cache for the first one's load.
    first = threading.Thread(target=slow, args=(1,))
    first.start()
    time.sleep(0.1)
    waiter = threading.Thread(target=slow, args=(1,))
    waiter.start()
    t = threading.Thread(target=ticker)
    t.start()
    t.join()
    release.set()
    first.join(30)
    waiter.join(30)
    # Python code kept running while a caller waited (a held GIL would give ~0 ticks).
    assert len(ticks) > 10


@pytest.mark.parametrize("mode", ["l1_only", "with_redis"])
def test_a_cached_function_may_call_another_one(mode, request):
    # With Redis the outer load runs inside the runtime's block_on (after its L2 read):
    # the inner call must not start a nested block_on there.
    request.getfixturevalue(mode)
    @cached(category="permissions")
    def perms(user_id):
        return ["read", user_id]

    @cached(category="menus")
    def menu(user_id):
        return {"items": perms(user_id)}

    assert menu(3) == {"items": ["read", 3]}
    assert menu(3) == {"items": ["read", 3]}
    assert HybridCache.get("perms:3", category="permissions") == ["read", 3]
