"""The cache is fail-open: a Redis outage slows nothing down and fails nothing."""

from __future__ import annotations

import time

from libs.common.cache import Cache, generation_fence, invoice_key
from libs.common.config import Config
from tools.devservers import free_port


async def test_cache_round_trips_and_invalidates(config: Config) -> None:
    cache = Cache(config.redis_url)
    try:
        key = invoice_key(f"test-{time.time_ns()}")
        await cache.set(key, b"v1", hot=True)
        assert await cache.get(key) == b"v1"
        await cache.invalidate(key)
        assert await cache.get(key) is None
        before = await cache.generation("analytics", key)
        await cache.bump("analytics", key)
        assert await cache.generation("analytics", key) != before
    finally:
        await cache.close()


async def test_bumping_many_owners_at_once_bumps_each_and_fences_those_with_a_position(
    config: Config,
) -> None:
    cache = Cache(config.redis_url)
    try:
        owners = [f"test-{time.time_ns()}-{n}" for n in range(3)]
        before = [await cache.generation("analytics", owner) for owner in owners]
        await cache.bump_many("analytics", {owners[0]: 7, owners[1]: None, owners[2]: 7})
        after = [await cache.generation("analytics", owner) for owner in owners]
        assert all(a != b for a, b in zip(after, before, strict=True))
        fences = [await cache._redis.get(generation_fence("analytics", owner)) for owner in owners]
        assert fences == [f"{7:016x}".encode(), None, f"{7:016x}".encode()]
    finally:
        await cache.close()


async def test_a_dead_redis_makes_every_call_a_quick_miss_not_an_error() -> None:
    cache = Cache(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.2)
    try:
        started = time.monotonic()
        assert await cache.get("k") is None  # the first failure opens the back-off
        await cache.set("k", b"v", hot=True)
        assert not cache.available
        for _ in range(50):
            assert await cache.get("k") is None  # skipped while backing off: no connect attempts
        assert await cache.generation("analytics", "m") == "none"
        assert time.monotonic() - started < 2.0
        assert not await cache.ping()
    finally:
        await cache.close()
