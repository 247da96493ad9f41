"""The Rust hit path of `@cached` (CachedCall): same keys and answers as the Python wrapper,
binds as a method, pickles by reference, falls back for keyword arguments."""
import pickle

import hybrid_cache
from hybrid_cache import HybridCache, cached

calls = []


@cached(category="general")
def module_level(a, b="x"):
    calls.append((a, b))
    return {"a": a, "b": b}


class Svc:
    def __init__(self, n):
        self.n = n

    def __str__(self):
        return f"svc{self.n}"

    @cached(category="general")
    def get(self, uid):
        calls.append(("svc", self.n, uid))
        return [self.n, uid]


class S(str):
    def __str__(self):
        return "other"


def test_hit_path_keys_and_fallbacks():
    hybrid_cache.configure(l1_only=True)
    calls.clear()
    assert isinstance(module_level, hybrid_cache._ext.CachedCall)
    assert module_level.__name__ == "module_level" and module_level.__wrapped__ is not None
    assert module_level(1) == {"a": 1, "b": "x"}
    assert module_level(1) == {"a": 1, "b": "x"}  # a hit from the Rust path
    assert calls == [(1, "x")]
    assert HybridCache.get("module_level:1") == {"a": 1, "b": "x"}
    # A value written under the same key is what the next hit returns (no stale memo).
    HybridCache.set("module_level:1", {"new": True})
    assert module_level(1) == {"new": True}
    # Keyword arguments: the Python wrapper's key format.
    assert module_level(2, b="y") == {"a": 2, "b": "y"}
    assert HybridCache.get("module_level:2:b=y") == {"a": 2, "b": "y"}
    # A str subclass is keyed by str(), as the original did.
    module_level(S("k"))
    assert HybridCache.get("module_level:other") is not None


def test_binds_as_a_method_and_pickles_by_reference():
    hybrid_cache.configure(l1_only=True)
    calls.clear()
    s = Svc(7)
    assert s.get(3) == [7, 3]
    assert s.get(3) == [7, 3]
    assert calls == [("svc", 7, 3)]
    assert HybridCache.get("get:svc7:3") == [7, 3]
    assert Svc.get(s, 3) == [7, 3]
    assert pickle.loads(pickle.dumps(module_level)) is module_level
