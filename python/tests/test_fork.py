"""Fork safety under a prefork server: the cache used in the parent, then fork (os.fork and
multiprocessing's 'fork' start method); each child starts its own runtime and cache and is
coherent with the parent through Redis."""

import multiprocessing
import os
import signal
import time

import hybrid_cache
from hybrid_cache import HybridCache, cached
from conftest import BOUND_MS

loads = []


@cached(category="permissions")
def get_user_permissions(user_id):
    loads.append((os.getpid(), user_id))
    return ["read", user_id]


def dump_and_kill(pid):
    """A hung child (ours, by its pid) says where: SIGABRT runs the faulthandler it inherited
    from pytest (every thread's Python stack to stderr), then it dies."""
    os.kill(pid, signal.SIGABRT)
    time.sleep(1)
    os.kill(pid, signal.SIGKILL)


def wait_child(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    dump_and_kill(pid)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


def child_work(tag):
    """What a prefork worker does; returns a description of what it saw."""
    # No faulthandler.dump_traceback_later here: pytest's own watchdog (faulthandler_timeout)
    # is armed in the parent, and cancelling or re-arming it in a forked child waits forever
    # for a watchdog thread that does not exist there. The parent dumps a hung child instead.
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
        pending = pool.map_async(pool_task, [101, 102, 103, 104], chunksize=1)
        try:
            # Bounded: a worker that hangs (or dies) would leave `map` waiting forever.
            outs = pending.get(timeout=60)
        except multiprocessing.TimeoutError:
            for p in pool._pool:
                dump_and_kill(p.pid)
            raise AssertionError("a forked pool worker hung") from None
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
    # The parent's cache was stopped for the fork: a new, empty one (without Redis nothing
    # brings the value back), working as before.
    assert HybridCache.get("p") is None
    HybridCache.set("p", "again")
    assert HybridCache.get("p") == "again"


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


def test_a_parents_cache_released_in_the_child_does_not_block_it(l1_only):
    # The parent's core, dropped in the child (here explicitly; at interpreter exit, or by
    # the fork hook, in a prefork worker): dropping a runtime waits for its worker threads,
    # which do not exist in the child. The extension leaves such a core as it is.
    parent_core = hybrid_cache._cache()
    HybridCache.set("p", "parent")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            HybridCache.set("c", 1)  # the child's own cache
            del parent_core  # the last reference: the parent's core is dropped here
            code = 5
        finally:
            os._exit(code)
    assert wait_child(pid, timeout=30) == 5


CHILD_EXITS_NORMALLY = r"""
import os, sys, time
import hybrid_cache
from hybrid_cache import HybridCache, cached

@cached(category="permissions")
def perms(user_id):
    return ["read", user_id]

hybrid_cache.configure(l1_only=True)
assert perms(1) == ["read", 1]
pid = os.fork()
if pid == 0:
    # A prefork worker: serves, then exits through the interpreter (sys.exit, as gunicorn's
    # workers do): module globals, and whatever still refers to the parent's core, are freed.
    assert perms(2) == ["read", 2]
    sys.exit(7)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(0 if os.waitstatus_to_exitcode(status) == 7 else 3)
    time.sleep(0.02)
os.kill(pid, 9)  # our child, by its pid
os.waitpid(pid, 0)
sys.exit(4)  # the child hung at exit
"""


def test_a_forked_child_exits_through_the_interpreter():
    import subprocess
    import sys

    from conftest import clean_env

    # Its own interpreter: a child of pytest must not run pytest's exit path.
    out = subprocess.run([sys.executable, "-c", CHILD_EXITS_NORMALLY], env=clean_env(),
                         timeout=120, capture_output=True, text=True)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])


def runtime_threads():
    """Threads of this process named like the extension's runtime threads."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().strip() == "hybrid-cache"
        except OSError:
            pass  # ended meanwhile
    return n


# After-fork hooks run in registration order, after the package's: what the parent had
# when the process was copied.
_at_fork = []
_count_at_fork = []
os.register_at_fork(after_in_parent=lambda: _count_at_fork and _at_fork.append(runtime_threads()))


def test_no_thread_of_the_cache_runs_at_a_fork(with_redis):
    # A runtime thread running at the fork leaves the child a copy of memory it was using:
    # parking_lot's global table of parked threads (tokio, moka) then points at threads
    # that do not exist in the child, which crashed (SIGSEGV) or hung when it parked one.
    assert get_user_permissions(5) == ["read", 5]
    assert runtime_threads() >= 1
    _count_at_fork.append(True)
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
    finally:
        _count_at_fork.clear()
    assert wait_child(pid) == 0
    assert _at_fork == [0]
    assert get_user_permissions(5) == ["read", 5]  # the parent starts a new cache


def child_under_load(tag):
    """A worker that parks threads at once: its cache, and four threads missing one key."""
    import threading

    @cached(category="permissions")
    def slow(x):
        time.sleep(0.01)
        return ["read", x]

    threads = [threading.Thread(target=slow, args=(tag,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return slow(tag) == ["read", tag] and get_user_permissions(tag) == ["read", tag]


def test_many_forks_of_a_busy_parent(with_redis):
    # Bounded repetition of the interleaving above: each fork copies a parent whose runtime
    # has been busy; every child must start its own and exit.
    for i in range(10):
        assert get_user_permissions(200 + i) == ["read", 200 + i]
        HybridCache.set(f"busy:{i}", i)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if child_under_load(300 + i) else 6
            finally:
                os._exit(code)
        assert wait_child(pid, timeout=30) == 0, f"child {i}"
