"""A worker process for the multi-process tests: reads JSON commands from stdin, answers one
JSON line each. Configured only through its environment, like a service would be."""

import json
import sys

from hybrid_cache import HybridCache, cache_stats, cached, health, invalidate_cache

loads = {"n": 0}
db = {}


@cached(category="permissions")
def get_user_permissions(user_id):
    loads["n"] += 1
    return db.get(str(user_id), ["read"])


def run(cmd, *args):
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
