"""Fork safety under a prefork server: the cache used in the parent, then fork (os.fork and
multiprocessing's 'fork' start method); each child starts its own runtime and cache and is
coherent with the parent through Redis."""

import faulthandler
import multiprocessing
import os
import time

import hybrid_cache
from hybrid_cache import HybridCache, cached
from conftest import BOUND_MS

loads = []


@cached(category="permissions")
def get_user_permissions(user_id):
    loads.append((os.getpid(), user_id))
    return ["read", user_id]


def wait_child(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)  # our child, by its pid
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


def child_work(tag):
    """What a prefork worker does; returns a description of what it saw."""
    faulthandler.dump_traceback_later(30, exit=True)  # a hung child says where
    assert get_user_permissions(1) == ["read", 1]           # parent's value, via L2 or a load
    assert get_user_permissions(tag) == ["read", tag]
    assert get_user_permissions(tag) == ["read", tag]
    HybridCache.set(f"child:{tag}", {"pid": os.getpid()})
    return {"node_id": HybridCache.node_id(), "loads": [u for _, u in loads if _ == os.getpid()]}


def test_os_fork_after_use_in_parent(with_redis):
    assert get_user_permissions(1) == ["read", 1]
    parent_node = HybridCache.node_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(r)
            out = child_work(77)
            ok = out["node_id"] != parent_node and out["loads"] == [77]
            os.write(w, repr(out).encode())
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(w)
    assert wait_child(pid) == 0
    os.read(r, 4096)
    os.close(r)
    time.sleep(BOUND_MS / 1000 + 0.02)
    assert HybridCache.get("child:77") == {"pid": pid}
    # The parent's cache still works after the fork.
    assert get_user_permissions(1) == ["read", 1]


def pool_task(tag):
    return child_work(tag)


def test_multiprocessing_fork_pool(with_redis):
    assert get_user_permissions(1) == ["read", 1]
    HybridCache.set("from_parent", [1, 2])
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        outs = pool.map(pool_task, [101, 102, 103, 104], chunksize=1)
    node_ids = {o["node_id"] for o in outs}
    assert HybridCache.node_id() not in node_ids
    assert all(101 <= u <= 104 for o in outs for u in o["loads"])
    time.sleep(BOUND_MS / 1000 + 0.02)
    for tag in (101, 102, 103, 104):
        assert HybridCache.get(f"child:{tag}")["pid"] != os.getpid()


def test_fork_in_l1_only_mode(l1_only):
    HybridCache.set("p", "parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            # The child's cache is new and empty (its own process, no Redis).
            code = 0 if HybridCache.get("p") is None and (HybridCache.set("c", 1) or HybridCache.get("c") == 1) else 3
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    assert HybridCache.get("p") == "parent"


def test_a_fork_the_hook_did_not_see_is_detected(l1_only):
    # Simulates a C-level fork that bypassed os.register_at_fork: the core's pid check.
    core = hybrid_cache._cache()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            hybrid_cache._core = core  # as if the hook had not run
            HybridCache.set("x", 1)
            code = 0 if HybridCache.get("x") == 1 and hybrid_cache._core is not core else 4
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
