"""Type stubs of hybrid_cache: the original module's API on the Rust core."""

from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from ._hybrid_cache import (
    ConfigError as ConfigError,
    DeadlineExceededError as DeadlineExceededError,
    ForkedError as ForkedError,
    HybridCacheError as HybridCacheError,
    InvalidKeyError as InvalidKeyError,
    InvalidPatternError as InvalidPatternError,
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
    """Caches a function's results under "{function}:{args}" in `category` (sync or async)."""

def invalidate_cache(key: str, category: str = "general", *, pattern: bool = False) -> int:
    """Invalidates an exact key, or "*" (the whole category), in every process."""

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
) -> None:
    """Settings over the environment; the next call starts a new cache with them."""

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
    ) -> None: ...
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
