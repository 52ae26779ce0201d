"""The cache is fail-open: a Redis outage slows nothing down and fails nothing."""

from __future__ import annotations

import time

from libs.common.cache import Cache, invoice_key
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
