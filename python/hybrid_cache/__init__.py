"""hybrid-cache for Python: the original module's API, in process, on the Rust core.

    from hybrid_cache import cached, invalidate_cache, cache_stats, HybridCache

    @cached(category="permissions")            # key "get_user_permissions:123"; category TTL
    def get_user_permissions(user_id: int): ...

    @cached(category="prompts", ttl=7200)      # per-call TTL; also works on `async def`
    def get_prompt_template(clause_id: str): ...

    invalidate_cache("get_user_permissions:123", category="permissions")   # exact key
    invalidate_cache("*", category="menus")                                 # whole category
    HybridCache.get("my_key", category="general")          # None on a miss
    HybridCache.set("my_key", {"data": "value"}, category="general", ttl=300)
    HybridCache.delete("my_key", category="general")
    cache_stats()   # {"l1_caches": {"permissions": {"size", "maxsize", "ttl"}, ...}, "l2_enabled": bool}

    # Near-cache features (issue #26), per category: refresh-ahead, fail-safe, negative
    # caching, TTL jitter, warm-up; and tags.
    configure(categories={"users": {"ttl_secs": 600, "max_entries": 5000, "negative_ttl_secs": 30,
                                    "fail_safe_max_age_secs": 3600, "refresh_after_secs": 480}})
    value, stale = get_user.marked(123)             # stale: the fail-safe value answered
    HybridCache.set("perms:123", perms, category="permissions", tags=["user:123"])
    invalidate_cache(tag="user:123")                # every category, every process, L2

Each process has one cache: an L1 (per category TTL and size) in front of Redis (L2) when
one is configured (`REDIS_URL`, or `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` /
`REDIS_DB` / `REDIS_SSL`, plus the node's `HC_*` settings); without Redis, L1 only. With
Redis, a write, delete or invalidation in any process is seen by every other process within
the staleness bound B (`HC_STALENESS_BOUND_MS`, default 100 ms).

The cache starts lazily, at the first call, and again in a child after `fork` (gunicorn,
uwsgi, multiprocessing): nothing started in a parent is used in a child. Waiting on Redis or
on another thread's load releases the GIL. See docs/python.md for the full guide.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import pickle
import re
import socket
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from . import _hybrid_cache as _ext
from ._hybrid_cache import (
    ConfigError,
    DeadlineExceededError,
    ForkedError,
    HybridCacheError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidTagError,
    InvalidTtlError,
    KeyTooLargeError,
    LoaderError,
    SerializationError,
    UnavailableError,
    UnknownCategoryError,
    ValueTooLargeError,
)

__all__ = [
    "cached",
    "invalidate_cache",
    "cache_stats",
    "health",
    "configure",
    "make_key",
    "HybridCache",
    "Serializer",
    "HybridCacheError",
    "ConfigError",
    "UnknownCategoryError",
    "InvalidKeyError",
    "KeyTooLargeError",
    "ValueTooLargeError",
    "InvalidPatternError",
    "InvalidTagError",
    "InvalidTtlError",
    "LoaderError",
    "SerializationError",
    "UnavailableError",
    "DeadlineExceededError",
    "ForkedError",
]

# ---------------------------------------------------------------------------------------
# Serializers


class Serializer:
    """How values become bytes in the cache: `dumps(value) -> bytes`, `loads(bytes)`.

    `dumps` raises `TypeError` for a value it cannot serialize; nothing is cached then.
    """

    __slots__ = ("name", "dumps", "loads")

    def __init__(self, name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]):
        self.name = name
        self.dumps = dumps
        self.loads = loads

    def __repr__(self) -> str:
        return f"Serializer({self.name!r})"


def _json_dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"hybrid_cache: a value of type {type(value).__name__} cannot be cached as JSON "
            f"({e}); cache dicts, lists, str, int, float, bool or None, "
            f"or use serializer='pickle'"
        ) from e


def _pickle_dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(
            f"hybrid_cache: a value of type {type(value).__name__} cannot be pickled ({e})"
        ) from e


_SERIALIZERS: Dict[str, Serializer] = {
    "json": Serializer("json", _json_dumps, json.loads),
    "pickle": Serializer("pickle", _pickle_dumps, pickle.loads),
}


def _serializer(s: Union[str, Serializer]) -> Serializer:
    if isinstance(s, Serializer):
        return s
    try:
        return _SERIALIZERS[s]
    except KeyError:
        raise ValueError(f"unknown serializer {s!r}: 'json', 'pickle' or a Serializer") from None


# ---------------------------------------------------------------------------------------
# The process's cache: started lazily, started again after a fork.

_lock = threading.Lock()
_core: Optional[_ext.Core] = None
_settings: Dict[str, Any] = {}
_started_in = 0  # the pid that started `_core`


def _node_id() -> str:
    """Unique per process: `HC_NODE_ID` (or `py-<hostname>`) followed by `-<pid>`."""
    base = os.environ.get("HC_NODE_ID") or ("py-" + socket.gethostname())
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base)
    suffix = f"-{os.getpid()}"
    return base[: 64 - len(suffix)] + suffix


def _start() -> _ext.Core:
    global _core, _started_in
    with _lock:
        if _core is None:
            _started_in = os.getpid()
            s = dict(_settings)
            _core = _ext.Core(
                s.pop("node_id", None) or _node_id(),
                redis_url=s.get("redis_url"),
                l1_only=s.get("l1_only", False),
                namespace=s.get("namespace"),
                staleness_bound_ms=s.get("staleness_bound_ms"),
                worker_threads=s.get("worker_threads") or int(os.environ.get("HC_WORKER_THREADS") or 2),
                categories_json=s.get("categories_json"),
                config_file=s.get("config_file"),
            )
        return _core


def _after_fork_in_child() -> None:
    global _core, _lock, _loads_lock
    # Either may have been held by a parent's thread at the fork.
    _lock = threading.Lock()
    _loads_lock = threading.Lock()
    # The parent's core: never used here. Releasing it is safe: the extension leaves a core
    # built before a fork as it is (its runtime threads exist only in the parent).
    _core = None


def _before_fork() -> None:
    """No thread of the cache may be running at a fork. The child gets a copy of memory
    shared with those threads (the global table of parked threads of `parking_lot`, used
    by tokio, moka and others; locks they held): a child that later parked a thread
    followed the dead threads' entries and crashed (SIGSEGV) or waited forever. So the
    cache is stopped (its runtime's threads joined) before the fork; the next call, in the
    parent as in the child, starts a new one."""
    global _core
    # Not under `_lock`: another thread may hold it, and this one must not wait here.
    old, _core = _core, None
    if old is not None:
        try:
            # Unsubscribes and joins the runtime's threads, also when something still holds
            # `old` (its later calls raise ForkedError, answered with a new core).
            old.stop()
        except Exception:  # noqa: BLE001 - a fork must not fail because of the cache
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _cache() -> _ext.Core:
    core = _core
    return core if core is not None else _start()


def _forked() -> _ext.Core:
    """The core raised ForkedError: it was stopped for a fork (the hook), or built in the
    parent before a fork the hook did not see (a C-level fork; the extension's
    `pthread_atfork` counter did). Either way, the next core is a new one."""
    global _core
    core = _core
    if core is not None and _started_in != os.getpid():
        _after_fork_in_child()
    elif core is not None:
        try:
            core.l2_enabled()
        except ForkedError:
            with _lock:
                if _core is core:
                    _core = None
    return _start()


def _call(method: str, *args: Any) -> Any:
    try:
        return getattr(_cache(), method)(*args)
    except ForkedError:
        return getattr(_forked(), method)(*args)


def configure(
    *,
    redis_url: Optional[str] = None,
    l1_only: bool = False,
    namespace: Optional[str] = None,
    staleness_bound_ms: Optional[int] = None,
    node_id: Optional[str] = None,
    worker_threads: Optional[int] = None,
    categories: Optional[Dict[str, Dict[str, Any]]] = None,
    config_file: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> None:
    """Settings over the environment for this process's cache; the current cache (if any)
    is shut down and the next call starts a new one with them.

    Optional: without it, the cache is configured from the environment alone, like the
    original module. `l1_only=True` ignores any Redis configured in the environment.

    `config_file` is a `cluster.toml` read instead of `HC_CONFIG` (its node-wide settings and
    `[categories.<name>]` tables; listen addresses, peers and `[[nodes]]` are for nodes and
    ignored). `categories` adds or replaces categories like `[categories.<name>]` tables, with
    the same settings: `{"users": {"ttl_secs": 600, "max_entries": 5000, "negative_ttl_secs":
    30, "fail_safe_max_age_secs": 3600, "refresh_after_secs": 480, "ttl_jitter": 0.1, ...}}`
    (`ttl_secs` and `max_entries` required). The whole configuration is checked here, by the
    Rust library's own rules: a bad value raises `ConfigError` naming the setting
    (`categories.users.ttl_jitter`), and nothing changes.
    """
    global _core
    categories_json = None
    if categories is not None:
        try:
            categories_json = json.dumps(categories, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid `categories`: {e}") from None
    if config_file is not None:
        config_file = os.fspath(config_file)
    _ext.check_config(
        node_id or _node_id(),
        redis_url=redis_url,
        l1_only=l1_only,
        namespace=namespace,
        staleness_bound_ms=staleness_bound_ms,
        categories_json=categories_json,
        config_file=config_file,
    )
    with _lock:
        old, _core = _core, None
        _settings.clear()
        _settings.update(
            redis_url=redis_url,
            l1_only=l1_only,
            namespace=namespace,
            staleness_bound_ms=staleness_bound_ms,
            node_id=node_id,
            worker_threads=worker_threads,
            categories_json=categories_json,
            config_file=config_file,
        )
    if old is not None:
        try:
            old.shutdown()
        except ForkedError:
            pass  # a parent's core: nothing of it runs here


def _shutdown_at_exit() -> None:
    core = _core
    if core is not None:
        try:
            core.shutdown()
        except Exception:  # noqa: BLE001 - exit must not fail because of the cache
            pass


import atexit  # noqa: E402

atexit.register(_shutdown_at_exit)

# ---------------------------------------------------------------------------------------
# Keys


def make_key(function_name: str, args: Tuple[Any, ...] = (), kwargs: Optional[Dict[str, Any]] = None) -> str:
    """The key `@cached` uses: `"{function}:{arg1}:{arg2}..."` as the original built it
    (`str()` of each positional argument, joined by `:`), then `:name=value` for keyword
    arguments in name order. `make_key("get_user_permissions", (123,))` is
    `"get_user_permissions:123"`; a function called without arguments has the key
    `"{function}"`.
    """
    key = function_name
    for a in args:
        key += ":" + str(a)
    if kwargs:
        for k in sorted(kwargs):
            key += f":{k}={kwargs[k]}"
    return key


# ---------------------------------------------------------------------------------------
# The decorator


_MISS = object()  # `Core.get_hit`'s answer when L1 alone cannot answer


def cached(
    category: str = "general",
    ttl: Optional[float] = None,
    *,
    serializer: Union[str, Serializer] = "json",
    key: Optional[Callable[..., str]] = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Caches a function's results in `category` under `"{function}:{args}"` (see
    `make_key`; `key=` takes a function of the same arguments returning the key instead).

    `ttl` (seconds) is the Redis TTL of the entries; their L1 lifetime is
    `min(ttl, category TTL)`; without it, the category's TTL. Concurrent calls that miss the
    same key in one process run the function once (single flight): every caller gets its
    result, or the exception it raised (then nothing is cached). Works on `async def`
    functions too: hits are answered on the event loop, misses wait in a worker thread
    while the coroutine runs on the loop.

    Values are JSON by default; `serializer="pickle"` opts in to any picklable value. A
    value that cannot be serialized raises TypeError and is not cached. Values served from
    this process's L1 are shared objects (as with the original's TTLCache): don't mutate them.

    The category's near-cache settings (`configure(categories=...)`, docs/python.md) apply:
    with `negative_ttl_secs` a function answering None is a cached "not found"; with
    `fail_safe_max_age_secs` a failing or too slow function answers the last value
    (`f.marked(*args)` returns `(value, stale)`); with `refresh_after_secs` a hit on an old
    entry answers at once and reloads it in the background.
    """
    ser = _serializer(serializer)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        name = func.__name__
        prefix = name + ":"
        keyfn = key
        dumps, loads = ser.dumps, ser.loads

        if inspect.iscoroutinefunction(func):
            return _async_wrapper(func, name, category, ttl, keyfn, dumps, loads)

        def marked(*args: Any, **kwargs: Any) -> Tuple[Any, bool]:
            """`(value, stale)`: stale is True when the function failed or was too slow and
            the answer is the category's fail-safe value."""
            k = keyfn(*args, **kwargs) if keyfn is not None else make_key(name, args, kwargs)
            return _call("get_or_load_marked", category, k, ttl, func, args, kwargs or None, dumps, loads)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if keyfn is not None:
                k = keyfn(*args, **kwargs)
            elif kwargs:
                k = make_key(name, args, kwargs)
            elif len(args) == 1:  # the common case, without building a list
                k = prefix + str(args[0])
            elif args:
                k = prefix + ":".join(map(str, args))
            else:
                k = name
            core = _core
            if core is None:
                core = _start()
            try:
                # A hit from L1 alone first: no load object built, no L2 request.
                value = core.get_hit(category, k, loads, _MISS)
                if value is _MISS:
                    value = core.get_or_load(category, k, ttl, func, args, kwargs or None, dumps, loads)
                return value
            except ForkedError:
                return _forked().get_or_load(category, k, ttl, func, args, kwargs or None, dumps, loads)

        _attach_helpers(wrapper, name, category, keyfn, marked)
        if keyfn is not None:
            return wrapper
        # The hit path in Rust (no Python frame): positional arguments, L1 answers. Every
        # other call goes to `wrapper` above, which builds the same key.
        fast = _ext.CachedCall(name, category, loads, globals(), wrapper)
        functools.update_wrapper(fast, func)
        _attach_helpers(fast, name, category, keyfn, marked)
        return fast

    return decorate


def _attach_helpers(
    wrapper: Any, name: str, category: str, keyfn: Optional[Callable[..., str]], marked: Callable[..., Any]
) -> None:
    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The key of this call."""
        return keyfn(*args, **kwargs) if keyfn is not None else make_key(name, args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> int:
        """Invalidates the cached result of this call, in every process."""
        return invalidate_cache(cache_key(*args, **kwargs), category=category)

    wrapper.cache_key = cache_key
    wrapper.invalidate = invalidate
    wrapper.marked = marked
    wrapper.category = category


_loads_by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dict[Tuple[str, str], asyncio.Future]]" = (
    weakref.WeakKeyDictionary()
)


_loads_lock = threading.Lock()


def _loop_loads(loop: asyncio.AbstractEventLoop) -> Dict[Tuple[str, str], "asyncio.Future[Any]"]:
    """The pending loads of `loop` (each dict is used only from its loop's thread; the
    lock guards the map of loops, shared by the threads running loops)."""
    with _loads_lock:
        pending = _loads_by_loop.get(loop)
        if pending is None:
            pending = _loads_by_loop[loop] = {}
        return pending


def _load_done(pending: Dict[Tuple[str, str], Any], key: Tuple[str, str], fut: "asyncio.Future[Any]") -> None:
    if pending.get(key) is fut:
        del pending[key]
    if not fut.cancelled():
        fut.exception()  # retrieved: every caller may have been cancelled


def _run_on(loop: asyncio.AbstractEventLoop, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Runs the coroutine function on `loop` from another thread and waits for its result. A
    loop that no longer runs (a background reload after the caller's loop ended) fails the
    load rather than wait forever."""
    if not loop.is_running():
        raise RuntimeError("hybrid_cache: the event loop of this cached coroutine function is not running")
    return asyncio.run_coroutine_threadsafe(func(*args, **kwargs), loop).result()


def _async_wrapper(func, name, category, ttl, keyfn, dumps, loads):
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        k = keyfn(*args, **kwargs) if keyfn is not None else make_key(name, args, kwargs)
        core = _core
        if core is None:
            # Starting may connect to Redis: not on the event loop.
            core = await asyncio.get_running_loop().run_in_executor(None, _start)
        try:
            hit, value = core.get_nowait(category, k, loads)
        except ForkedError:
            core = _forked()
            hit, value = core.get_nowait(category, k, loads)
        if hit:
            return value
        loop = asyncio.get_running_loop()
        # One waiting thread per key per loop: the other callers of this loop await it.
        pending = _loop_loads(loop)
        fut = pending.get((category, k))
        if fut is None:

            def run_on_loop() -> Any:
                # Called by the library in a worker thread, once per key for concurrent misses
                # (or later, for a background reload: refresh-ahead).
                return _run_on(loop, func, args, kwargs)

            load = functools.partial(core.get_or_load, category, k, ttl, run_on_loop, (), None, dumps, loads)
            fut = loop.run_in_executor(None, load)
            pending[(category, k)] = fut
            fut.add_done_callback(functools.partial(_load_done, pending, (category, k)))
        # shield: a cancelled caller does not cancel the load the others wait for.
        return await asyncio.shield(fut)

    async def marked(*args: Any, **kwargs: Any) -> Tuple[Any, bool]:
        """`(value, stale)`, in a worker thread (not coalesced with the wrapper's loads)."""
        k = keyfn(*args, **kwargs) if keyfn is not None else make_key(name, args, kwargs)
        loop = asyncio.get_running_loop()

        def run_on_loop() -> Any:
            return _run_on(loop, func, args, kwargs)

        load = functools.partial(_call, "get_or_load_marked", category, k, ttl, run_on_loop, (), None, dumps, loads)
        return await loop.run_in_executor(None, load)

    _attach_helpers(wrapper, name, category, keyfn, marked)
    return wrapper


# ---------------------------------------------------------------------------------------
# The rest of the original API


def invalidate_cache(
    key: Optional[str] = None, category: str = "general", *, pattern: bool = False, tag: Optional[str] = None
) -> int:
    """Invalidates `key` in `category`, in L2 and in the L1 of every process.

    `"*"` invalidates the whole category (and category `"*"` with key `"*"`, everything).
    Any other key is exact, as in the original (a key like `"get_roles:[1, 2]"` is a key, not
    a pattern); `pattern=True` reads it as a glob (`*`, `?`, `[a-z]`, `\\` escapes).
    `tag="user:123"` (without a key) invalidates every entry written with that tag
    (`HybridCache.set(..., tags=[...])`), in every category. Returns the number of entries
    removed from this process's L1.
    """
    if tag is not None:
        if key is not None or pattern:
            raise ValueError("invalidate_cache: give a key or a tag, not both")
        return _call("invalidate_tag", tag)
    if key is None:
        raise ValueError("invalidate_cache: give a key (or '*') or a tag")
    if key == "*" or pattern:
        return _call("invalidate", key, category)
    return _call("invalidate_key", category, key)


def cache_stats() -> Dict[str, Any]:
    """`{"l1_caches": {category: {"size", "maxsize", "ttl"}}, "l2_enabled": bool}`, the
    original format."""
    stats = json.loads(_call("stats_json"))
    l1 = {
        cat: {"size": s["size"], "maxsize": s["maxsize"], "ttl": s["ttl"]}
        for cat, s in stats["l1_caches"].items()
    }
    return {"l1_caches": l1, "l2_enabled": bool(stats["l2_enabled"])}


def health() -> Dict[str, Any]:
    """The `cache` part of the node's `/health` document: `{"l1_enabled",
    "l2_redis_enabled", "l1_stats": {category: {"size", "maxsize", "ttl", "consistency"}}}`,
    ready to serve from a FastAPI or Flask health route."""
    return json.loads(_call("health_json"))["cache"]


class HybridCache:
    """The original static-style API: `HybridCache.get/set/delete(key, category=...)`."""

    @staticmethod
    def get(key: str, category: str = "general", *, serializer: Union[str, Serializer] = "json") -> Any:
        """The value of `key`, or None on a miss."""
        loads = json.loads if serializer == "json" else _serializer(serializer).loads
        core = _core
        if core is None:
            core = _start()
        try:
            return core.get(category, key, loads)
        except ForkedError:
            return _forked().get(category, key, loads)

    @staticmethod
    def set(
        key: str,
        value: Any,
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
        tags: Optional[Sequence[str]] = None,
    ) -> None:
        """Writes `value` (TypeError, nothing written, if it cannot be serialized). `ttl`
        is the Redis TTL in seconds; L1 keeps it `min(ttl, category TTL)`. Every other
        process drops its L1 copy within the bound. `tags` (at most 16, each 1-128 bytes of
        `[A-Za-z0-9_.:-]`, else InvalidTagError) mark the value for `invalidate_tag`; a later
        write of the key replaces them."""
        data = _serializer(serializer).dumps(value)
        if tags is None:
            _call("set", category, key, data, ttl)
        else:
            if isinstance(tags, str):
                raise TypeError("tags: a list of tags, not a str")
            _call("set", category, key, data, ttl, list(tags))

    @staticmethod
    def invalidate_tag(tag: str) -> int:
        """Removes every entry written with `tag`, in every category, from L2 and from the
        L1 of every process (within the bound, as a key invalidation). Returns the number of
        entries removed from this process's L1."""
        return _call("invalidate_tag", tag)

    @staticmethod
    def get_or_load(
        key: str,
        loader: Callable[[], Any],
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
    ) -> Any:
        """The cached value of `key`, or `loader()` (run once per process for concurrent
        misses) cached, with the category's near-cache settings as for `@cached`."""
        return HybridCache.get_or_load_marked(key, loader, category, ttl, serializer=serializer)[0]

    @staticmethod
    def get_or_load_marked(
        key: str,
        loader: Callable[[], Any],
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
    ) -> Tuple[Any, bool]:
        """`get_or_load` returning `(value, stale)`: stale is True when `loader` failed or was
        too slow and the answer is the category's fail-safe value (`fail_safe_max_age_secs`)."""
        ser = _serializer(serializer)
        return _call("get_or_load_marked", category, key, ttl, loader, (), None, ser.dumps, ser.loads)

    @staticmethod
    def delete(key: str, category: str = "general") -> None:
        """Deletes `key` from L2 and from every process's L1 (also when absent)."""
        _call("delete", category, key)

    @staticmethod
    def invalidate(key: str, category: str = "general", *, pattern: bool = False) -> int:
        """Same as `invalidate_cache`."""
        return invalidate_cache(key, category, pattern=pattern)

    @staticmethod
    def stats() -> Dict[str, Any]:
        """The full node stats (the `/v1/stats` document: counters, coherence state)."""
        return json.loads(_call("stats_json"))

    @staticmethod
    def health() -> Dict[str, Any]:
        """Same as `health()`."""
        return health()

    @staticmethod
    def node_id() -> str:
        """This process's node id (unique per process: `HC_NODE_ID` or `py-<host>`, then the pid)."""
        return _cache().node_id
