"""Type stubs of hybrid_cache: the original module's API on the Rust core."""

import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union

from ._hybrid_cache import (
    ConfigError as ConfigError,
    DeadlineExceededError as DeadlineExceededError,
    ForkedError as ForkedError,
    HybridCacheError as HybridCacheError,
    InvalidKeyError as InvalidKeyError,
    InvalidPatternError as InvalidPatternError,
    InvalidTagError as InvalidTagError,
    InvalidTtlError as InvalidTtlError,
    KeyTooLargeError as KeyTooLargeError,
    LoaderError as LoaderError,
    SerializationError as SerializationError,
    UnavailableError as UnavailableError,
    UnknownCategoryError as UnknownCategoryError,
    ValueTooLargeError as ValueTooLargeError,
)

F = TypeVar("F", bound=Callable[..., Any])

class Serializer:
    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]
    def __init__(self, name: str, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]) -> None: ...

def cached(
    category: str = "general",
    ttl: Optional[float] = None,
    *,
    serializer: Union[str, Serializer] = "json",
    key: Optional[Callable[..., str]] = None,
) -> Callable[[F], F]:
    """Caches a function's results under "{function}:{args}" in `category` (sync or async).

    The decorated function also has `cache_key(*args, **kwargs)`, `invalidate(*args,
    **kwargs)`, `category` and `marked(*args, **kwargs) -> (value, stale)` (a coroutine
    function for `async def`): stale is True when the answer is the fail-safe value."""

def invalidate_cache(
    key: Optional[str] = None, category: str = "general", *, pattern: bool = False, tag: Optional[str] = None
) -> int:
    """Invalidates an exact key, "*" (the whole category), a glob (`pattern=True`), or with
    `tag=` every entry carrying the tag in every category, in every process."""

def cache_stats() -> Dict[str, Any]:
    """{"l1_caches": {category: {"size", "maxsize", "ttl"}}, "l2_enabled": bool}"""

def health() -> Dict[str, Any]:
    """The `cache` part of /health: {"l1_enabled", "l2_redis_enabled", "l1_stats"}."""

def configure(
    *,
    redis_url: Optional[str] = None,
    l1_only: bool = False,
    namespace: Optional[str] = None,
    staleness_bound_ms: Optional[int] = None,
    node_id: Optional[str] = None,
    worker_threads: Optional[int] = None,
    categories: Optional[Dict[str, Dict[str, Any]]] = None,
    config_file: Optional[Union[str, os.PathLike[str]]] = None,
) -> None:
    """Settings over the environment; the next call starts a new cache with them.

    `categories`: `{name: {"ttl_secs", "max_entries", "ttl_jitter", "negative_ttl_secs",
    "refresh_after_secs", "fail_safe_max_age_secs", "load_soft_timeout_ms", "load_timeout_ms",
    "warm_up_keys", "warm_up_sample_ms", "max_bytes", "consistency"}}`, as `[categories.<name>]`
    tables; `config_file`: a cluster.toml (instead of HC_CONFIG). Raises ConfigError naming
    the bad setting; nothing changes then."""

def make_key(function_name: str, args: Tuple[Any, ...] = (), kwargs: Optional[Dict[str, Any]] = None) -> str:
    """"{function}:{arg1}:{arg2}...", then ":name=value" per keyword argument."""

class HybridCache:
    @staticmethod
    def get(key: str, category: str = "general", *, serializer: Union[str, Serializer] = "json") -> Any: ...
    @staticmethod
    def set(
        key: str,
        value: Any,
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
        tags: Optional[Sequence[str]] = None,
    ) -> None: ...
    @staticmethod
    def invalidate_tag(tag: str) -> int: ...
    @staticmethod
    def get_or_load(
        key: str,
        loader: Callable[[], Any],
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
    ) -> Any: ...
    @staticmethod
    def get_or_load_marked(
        key: str,
        loader: Callable[[], Any],
        category: str = "general",
        ttl: Optional[float] = None,
        *,
        serializer: Union[str, Serializer] = "json",
    ) -> Tuple[Any, bool]: ...
    @staticmethod
    def delete(key: str, category: str = "general") -> None: ...
    @staticmethod
    def invalidate(key: str, category: str = "general", *, pattern: bool = False) -> int: ...
    @staticmethod
    def stats() -> Dict[str, Any]: ...
    @staticmethod
    def health() -> Dict[str, Any]: ...
    @staticmethod
    def node_id() -> str: ...
