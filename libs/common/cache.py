"""Redis cache in the seed's two tiers: hot (invoices, payment status; 30 s) and warm (merchant
data, analytics; 5 min). Projections invalidate the keys of the rows they change.

Fail-open: a Redis outage must slow requests, never fail them. After an error the cache stays
off for a short back-off so a dead Redis does not add a connect timeout to every request.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("checkout.cache")

PREFIX = "checkout:"


def invoice_key(invoice_id: str) -> str:
    return f"{PREFIX}invoice:{invoice_id}"


def merchant_key(merchant_id: str) -> str:
    return f"{PREFIX}merchant:{merchant_id}"


def generation_key(scope: str, owner: str) -> str:
    """A counter bumped on every change; cache keys embed it, so a bump invalidates a whole
    family of keys (e.g. every analytics range of one merchant) with one write."""
    return f"{PREFIX}gen:{scope}:{owner}"


class Cache:
    def __init__(
        self,
        url: str,
        *,
        hot_ttl: int = 30,
        warm_ttl: int = 300,
        backoff_seconds: float = 5.0,
        timeout_seconds: float = 0.25,
    ) -> None:
        self.hot_ttl = hot_ttl
        self.warm_ttl = warm_ttl
        self._backoff = backoff_seconds
        self._down_until = 0.0
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry_on_timeout=False,
        )

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, error: Exception) -> None:
        if self.available:
            log.warning("cache %s failed, bypassing Redis for %.0fs: %s", op, self._backoff, error)
        self._down_until = time.monotonic() + self._backoff

    async def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value: bytes | None = await self._redis.get(key)
            return value
        except (RedisError, OSError) as error:
            self._failed("get", error)
            return None

    async def set(self, key: str, value: bytes, *, hot: bool) -> None:
        if not self.available:
            return
        try:
            await self._redis.set(key, value, ex=self.hot_ttl if hot else self.warm_ttl)
        except (RedisError, OSError) as error:
            self._failed("set", error)

    async def invalidate(self, *keys: str) -> None:
        """Deletes keys; tries even during back-off, since a stale entry is worse than latency."""
        if not keys:
            return
        try:
            await self._redis.delete(*keys)
        except (RedisError, OSError) as error:
            self._failed("invalidate", error)

    async def generation(self, scope: str, owner: str) -> str:
        if not self.available:
            return "none"
        try:
            value = await self._redis.get(generation_key(scope, owner))
            return value.decode() if value else "0"
        except (RedisError, OSError) as error:
            self._failed("generation", error)
            return "none"

    async def bump(self, scope: str, owner: str) -> None:
        try:
            await self._redis.incr(generation_key(scope, owner))
        except (RedisError, OSError) as error:
            self._failed("bump", error)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
