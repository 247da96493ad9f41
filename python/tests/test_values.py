"""Serialization: JSON by default, pickle opt-in, a clear TypeError and nothing cached for a
value that cannot be serialized; keyword arguments in keys."""

import pytest

import hybrid_cache
from hybrid_cache import HybridCache, cached, make_key


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)


def test_json_values_round_trip(l1_only):
    for v in [{"a": [1, 2.5, None, True]}, ["x"], "s", 12, 1.5, True, None]:
        HybridCache.set("k", v)
        assert HybridCache.get("k") == v


def test_unserializable_value_is_a_type_error_and_nothing_is_cached(l1_only):
    with pytest.raises(TypeError, match="cannot be cached as JSON"):
        HybridCache.set("obj", object())
    assert HybridCache.get("obj") is None

    calls = []

    @cached(category="general")
    def make_point(n):
        calls.append(n)
        return Point(n, n)

    with pytest.raises(TypeError, match="serializer='pickle'"):
        make_point(1)
    with pytest.raises(TypeError):
        make_point(1)
    assert calls == [1, 1]  # nothing was cached, the loader ran again
    assert HybridCache.get("make_point:1") is None


def test_pickle_is_opt_in(l1_only):
    calls = []

    @cached(category="general", serializer="pickle")
    def make_point(n):
        calls.append(n)
        return Point(n, -n)

    assert make_point(3) == Point(3, -3)
    assert make_point(3) == Point(3, -3)
    assert calls == [3]
    assert HybridCache.get("make_point:3", serializer="pickle") == Point(3, -3)
    HybridCache.set("tuple", (1, {2}), serializer="pickle")
    assert HybridCache.get("tuple", serializer="pickle") == (1, {2})
    with pytest.raises(TypeError, match="cannot be pickled"):
        HybridCache.set("lambda", lambda: 1, serializer="pickle")


def test_keys_follow_the_original_format(l1_only):
    assert make_key("get_user_permissions", (123,)) == "get_user_permissions:123"
    assert make_key("get_user_menu", (7, "admin")) == "get_user_menu:7:admin"
    assert make_key("f") == "f"
    assert make_key("f", (1,), {"b": 2, "a": "x"}) == "f:1:a=x:b=2"

    @cached(category="general")
    def search(q, page=1):
        return [q, page]

    assert search("x", page=2) == ["x", 2]
    assert HybridCache.get("search:x:page=2") == ["x", 2]
    assert search.cache_key("x", page=2) == "search:x:page=2"
    search.invalidate("x", page=2)
    assert HybridCache.get("search:x:page=2") is None


def test_custom_key_function(l1_only):
    @cached(category="general", key=lambda user, **_: f"profile:{user['id']}")
    def profile(user):
        return {"id": user["id"]}

    assert profile({"id": 4}) == {"id": 4}
    assert HybridCache.get("profile:4") == {"id": 4}


def test_unknown_serializer_is_refused():
    with pytest.raises(ValueError):
        hybrid_cache.cached(serializer="yaml")
