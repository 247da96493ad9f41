"""The original module's usage examples, unchanged but for the import line, without Redis
and with one."""

import pytest

from hybrid_cache import cached, invalidate_cache, cache_stats, HybridCache

calls = {"perms": 0, "prompt": 0, "menu": 0}


@cached(category="permissions")            # key "get_user_permissions:123"; category TTL
def get_user_permissions(user_id: int):
    calls["perms"] += 1
    return {"user": user_id, "permissions": ["read", "write"]}


@cached(category="prompts", ttl=7200)      # per-call TTL
def get_prompt_template(clause_id: str):
    calls["prompt"] += 1
    return f"template for {clause_id}"


@cached(category="menus")
def get_user_menu(user_id: int, lang: str):
    calls["menu"] += 1
    return [{"label": "home", "lang": lang}]


def examples():
    calls.update(perms=0, prompt=0, menu=0)
    assert get_user_permissions(123) == {"user": 123, "permissions": ["read", "write"]}
    assert get_user_permissions(123) == {"user": 123, "permissions": ["read", "write"]}
    assert calls["perms"] == 1
    # The key is the original's: the function name, then the arguments joined by ':'.
    assert HybridCache.get("get_user_permissions:123", category="permissions") == {
        "user": 123, "permissions": ["read", "write"]}
    assert get_prompt_template("c-9") == "template for c-9"
    assert get_prompt_template("c-9") == "template for c-9"
    assert calls["prompt"] == 1
    assert get_user_menu(7, "fr") == [{"label": "home", "lang": "fr"}]
    assert HybridCache.get("get_user_menu:7:fr", category="menus") == [{"label": "home", "lang": "fr"}]

    invalidate_cache("get_user_permissions:123", category="permissions")   # exact key
    assert HybridCache.get("get_user_permissions:123", category="permissions") is None
    get_user_permissions(123)
    assert calls["perms"] == 2

    invalidate_cache("*", category="menus")                                 # whole category
    assert HybridCache.get("get_user_menu:7:fr", category="menus") is None
    get_user_menu(7, "fr")
    assert calls["menu"] == 2

    assert HybridCache.get("my_key", category="general") is None          # None on a miss
    HybridCache.set("my_key", {"data": "value"}, category="general", ttl=300)
    assert HybridCache.get("my_key", category="general") == {"data": "value"}
    HybridCache.delete("my_key", category="general")
    assert HybridCache.get("my_key", category="general") is None

    stats = cache_stats()
    assert set(stats) == {"l1_caches", "l2_enabled"}
    assert set(stats["l1_caches"]) >= {"permissions", "menus", "roles", "prompts", "general"}
    for s in stats["l1_caches"].values():
        assert set(s) == {"size", "maxsize", "ttl"}
    assert stats["l1_caches"]["permissions"]["size"] in (0, 1)  # a reload may race its own invalidation's echo
    assert stats["l1_caches"]["permissions"]["maxsize"] == 500
    assert stats["l1_caches"]["permissions"]["ttl"] == 600
    return stats


def test_examples_without_redis(l1_only):
    stats = examples()
    assert stats["l2_enabled"] is False
    assert stats["l1_caches"]["permissions"]["size"] == 1
    assert stats["l1_caches"]["menus"]["size"] == 1


def test_examples_with_redis(with_redis):
    import redis

    url, ns = with_redis
    assert examples()["l2_enabled"] is True
    # The value really is in Redis (L2), under the cluster namespace.
    get_user_permissions(5)
    r = redis.Redis.from_url(url)
    assert any(b"get_user_permissions:5" in k for k in r.scan_iter(f"{ns}*"))
    # The per-call ttl is the Redis TTL; without one, the category's (permissions: 600 s).
    [prompt] = [k for k in r.scan_iter(f"{ns}*") if b"get_prompt_template:c-9" in k]
    assert 7000 < r.ttl(prompt) <= 7200
    [perm] = [k for k in r.scan_iter(f"{ns}*") if k.endswith(b"get_user_permissions:5")]
    assert 500 < r.ttl(perm) <= 600


def test_unknown_category_is_an_error_with_the_library_code(l1_only):
    import hybrid_cache

    with pytest.raises(hybrid_cache.UnknownCategoryError) as e:
        HybridCache.get("k", category="nope")
    assert isinstance(e.value, hybrid_cache.HybridCacheError)
    assert e.value.code == "unknown_category"
    with pytest.raises(hybrid_cache.InvalidTtlError) as e:
        HybridCache.set("k", 1, category="general", ttl=0)
    assert e.value.code == "invalid_ttl"
    with pytest.raises(hybrid_cache.InvalidKeyError):
        HybridCache.set("", 1)


def test_health_is_the_cache_part_of_the_node_document(l1_only):
    from hybrid_cache import health

    h = health()
    assert h["l1_enabled"] is True and h["l2_redis_enabled"] is False
    assert h["l1_stats"]["roles"]["maxsize"] == 200
    assert h["l1_stats"]["roles"]["ttl"] == 1800


def test_glob_invalidation_is_opt_in(l1_only):
    HybridCache.set("get_roles:[1, 2]", ["admin"], category="roles")
    HybridCache.set("get_roles:1", ["user"], category="roles")
    # Exact by default: the brackets are part of the key, not a set.
    invalidate_cache("get_roles:[1, 2]", category="roles")
    assert HybridCache.get("get_roles:[1, 2]", category="roles") is None
    assert HybridCache.get("get_roles:1", category="roles") == ["user"]
    assert invalidate_cache("get_roles:*", category="roles", pattern=True) == 1
    assert HybridCache.get("get_roles:1", category="roles") is None
