"""`async def` functions: cached without blocking the event loop, one load per key for
concurrent misses, exceptions to every waiter."""

import asyncio
import threading
import time

import pytest

from hybrid_cache import HybridCache, cached


@pytest.mark.parametrize("mode", ["l1_only", "with_redis"])
def test_async_loader_runs_once_for_concurrent_callers(mode, request):
    request.getfixturevalue(mode)
    calls = []

    @cached(category="prompts", ttl=7200)
    async def get_prompt_template(clause_id):
        calls.append(clause_id)
        await asyncio.sleep(0.3)
        return {"clause": clause_id}

    async def main():
        results = await asyncio.gather(*(get_prompt_template("c1") for _ in range(20)))
        again = await get_prompt_template("c1")
        return results, again

    results, again = asyncio.run(main())
    assert calls == ["c1"]
    assert results == [{"clause": "c1"}] * 20
    assert again == {"clause": "c1"}
    assert HybridCache.get("get_prompt_template:c1", category="prompts") == {"clause": "c1"}


def test_async_loader_exception_reaches_every_caller(l1_only):
    calls = []

    @cached(category="general")
    async def broken(x):
        calls.append(x)
        await asyncio.sleep(0.3)
        raise LookupError("no such clause")

    async def main():
        return await asyncio.gather(*(broken(1) for _ in range(10)), return_exceptions=True)

    out = asyncio.run(main())
    assert len(out) == 10 and all(isinstance(e, LookupError) for e in out)
    assert calls == [1]
    assert HybridCache.get("broken:1") is None


def test_waiting_for_a_load_does_not_block_the_event_loop(l1_only):
    release = threading.Event()

    @cached(category="general")
    def slow_sync(x):
        # Released by a task on the event loop: a blocked loop would never release it.
        return x * 2 if release.wait(timeout=10) else "the event loop was blocked"

    # The same key and category from an async function: it joins the sync load.
    @cached(category="general", key=lambda x: f"slow_sync:{x}")
    async def slow_async(x):
        return x * 2

    loader = threading.Thread(target=slow_sync, args=(21,))
    loader.start()
    time.sleep(0.1)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            for _ in range(30):
                await asyncio.sleep(0.01)
                ticks += 1
            release.set()

        value, _ = await asyncio.gather(slow_async(21), ticker())
        return value, ticks

    value, ticks = asyncio.run(main())
    loader.join(30)
    assert value == 42
    assert ticks == 30  # the loop ran the ticker to its end while the call waited
