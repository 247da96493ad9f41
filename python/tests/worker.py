"""A worker process for the multi-process tests: reads JSON commands from stdin, answers one
JSON line each. Configured only through its environment, like a service would be."""

import json
import sys
import time

import hybrid_cache
from hybrid_cache import HybridCache, cache_stats, cached, health, invalidate_cache

loads = {"n": 0, "users": 0, "fresh": 0}
db = {}
users = {}
delay = {"s": 0.0}
_MISS = object()


@cached(category="permissions")
def get_user_permissions(user_id):
    loads["n"] += 1
    return db.get(str(user_id), ["read"])


# Near-cache tests (test_near_cache.py): categories from the HC_CONFIG file.
@cached(category="users")
def find_user(user_id):
    loads["users"] += 1
    return users.get(str(user_id))


@cached(category="fresh")
def fresh_user(user_id):
    loads["fresh"] += 1
    value = users.get(str(user_id))
    time.sleep(delay["s"])
    return value


def in_l1(category, key):
    """[True, value] when this process's L1 alone answers, else [False, None]."""
    value = hybrid_cache._cache().get_hit(category, key, json.loads, _MISS)
    return [False, None] if value is _MISS else [True, value]


NEAR = {
    "user": lambda a: find_user(a[0]),
    "fresh": lambda a: fresh_user(a[0]),
    "users_db": lambda a: users.__setitem__(str(a[0]), a[1]),
    "delay": lambda a: delay.__setitem__("s", a[0]),
    "set_tagged": lambda a: HybridCache.set(a[0], a[1], category=a[2], tags=a[3]),
    "invalidate_tag": lambda a: invalidate_cache(tag=a[0]),
    "full_stats": lambda a: HybridCache.stats(),
    "in_l1": lambda a: in_l1(a[0], a[1]),
    "loads_of": lambda a: loads[a[0]],
}


def run(cmd, *args):
    if cmd in NEAR:
        return NEAR[cmd](args)
    if cmd == "get":
        return HybridCache.get(args[0], category=args[1])
    if cmd == "set":
        return HybridCache.set(args[0], args[1], category=args[2])
    if cmd == "delete":
        return HybridCache.delete(args[0], category=args[1])
    if cmd == "invalidate":
        return invalidate_cache(args[0], category=args[1])
    if cmd == "perms":
        return get_user_permissions(args[0])
    if cmd == "db":
        db[str(args[0])] = args[1]
        return None
    if cmd == "loads":
        return loads["n"]
    if cmd == "stats":
        return cache_stats()
    if cmd == "health":
        return health()
    if cmd == "node_id":
        return HybridCache.node_id()
    raise ValueError(f"unknown command {cmd}")


for line in sys.stdin:
    cmd = json.loads(line)
    try:
        out = {"ok": run(*cmd)}
    except Exception as e:  # noqa: BLE001 - reported to the test
        out = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
