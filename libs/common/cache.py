"""Redis cache in the seed's two tiers: hot (invoices, payment status; 30 s) and warm (merchant
data, analytics; 5 min). Projections invalidate the keys of the rows they change.

Fail-open: a Redis outage must slow requests, never fail them. After an error the cache stays
off for a short back-off so a dead Redis does not add a connect timeout to every request.

With read replicas an entry records the WAL position its data is at least as new as (`set_at`,
`get_at`): a read carrying a consistency token is served only by an entry at least that new. A
write fences the keys it invalidates at its own position, so a replica read that started before
the write (or one from a replica still behind it) cannot put an older copy back for the TTL:
the fill and the fence are compared inside Redis, atomically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from libs.common import metrics

log = logging.getLogger("checkout.cache")

PREFIX = "checkout:"


def invoice_key(invoice_id: str) -> str:
    return f"{PREFIX}invoice:{invoice_id}"


def merchant_key(merchant_id: str) -> str:
    return f"{PREFIX}merchant:{merchant_id}"


def fence_key(key: str) -> str:
    return f"{PREFIX}fence:{key}"


# An entry starts with its position as 16 hex digits ("-" * 16: unknown), so Lua compares them
# as strings; "-" sorts before every digit, so an unknown position never passes a fence.
_POSITION_CHARS = 16
_UNKNOWN = b"-" * _POSITION_CHARS
_FILL = """
local fence = redis.call('GET', KEYS[2])
if fence and ARGV[1] <= fence then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ARGV[2], 'EX', ARGV[3])
return 1
"""
# KEYS: fence keys to raise to ARGV[1] (never lowered), then keys to delete.
_FENCE = """
for i = 1, tonumber(ARGV[3]) do
  local old = redis.call('GET', KEYS[i])
  if (not old) or old < ARGV[1] then redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end
end
for i = tonumber(ARGV[3]) + 1, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
"""


def _lookup(key: str, result: str) -> None:
    # The family is the key's first segment (invoice, merchant, analytics, ...): a bounded set,
    # never the id after it.
    family = key.removeprefix(PREFIX).split(":", 1)[0] if key.startswith(PREFIX) else "other"
    metrics.CACHE_LOOKUPS.labels(family, result).inc()


def _position(value: int | None) -> bytes:
    return _UNKNOWN if value is None else f"{value:016x}".encode()


def generation_key(scope: str, owner: str) -> str:
    """A counter bumped on every change; cache keys embed it, so a bump invalidates a whole
    family of keys (e.g. every analytics range of one merchant) with one write."""
    return f"{PREFIX}gen:{scope}:{owner}"


def generation_fence(scope: str, owner: str) -> str:
    """The fence of a generation's whole family of keys (`set_at(..., fence=...)`)."""
    return fence_key(generation_key(scope, owner))


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
        answered, value = await self._get(key)
        if answered:
            _lookup(key, "miss" if value is None else "hit")
        return value

    async def _get(self, key: str) -> tuple[bool, bytes | None]:
        """Whether Redis answered (a bypass is counted here), and the stored value if any."""
        if not self.available:
            _lookup(key, "bypassed")
            return False, None
        try:
            value: bytes | None = await self._redis.get(key)
            return True, value
        except (RedisError, OSError) as error:
            self._failed("get", error)
            _lookup(key, "bypassed")
            return False, None

    async def set(self, key: str, value: bytes, *, hot: bool) -> None:
        if not self.available:
            return
        try:
            await self._redis.set(key, value, ex=self.hot_ttl if hot else self.warm_ttl)
        except (RedisError, OSError) as error:
            self._failed("set", error)

    async def get_at(self, key: str, required: int | None) -> tuple[bytes, int | None] | None:
        """An entry written by `set_at` and its position, if it is at least as new as `required`
        (None: any entry); a miss otherwise."""
        answered, raw = await self._get(key)
        if not answered:
            return None
        if raw is None or len(raw) < _POSITION_CHARS:
            _lookup(key, "miss")
            return None
        head, payload = raw[:_POSITION_CHARS], raw[_POSITION_CHARS:]
        position = None if head == _UNKNOWN else int(head, 16)
        if required is not None and (position is None or position < required):
            _lookup(key, "stale")  # older than the caller's own write: read through instead
            return None
        _lookup(key, "hit")
        return payload, position

    async def set_at(
        self, key: str, payload: bytes, position: int | None, *, hot: bool, fence: str | None = None
    ) -> None:
        """Stores `payload` as at least as new as `position`, unless a write fenced the key (or
        `fence`, the key a family of entries is fenced under) at that position or later."""
        if not self.available:
            return
        ttl = self.hot_ttl if hot else self.warm_ttl
        try:
            await self._redis.eval(_FILL, 2, key, fence or fence_key(key), _position(position), payload, ttl)
        except (RedisError, OSError) as error:
            self._failed("set", error)

    async def invalidate(self, *keys: str, fence: int | None = None, hot: bool = True) -> None:
        """Deletes keys; tries even during back-off, since a stale entry is worse than latency.
        `fence`: the writer's WAL position; entries older than it stay out for the key's TTL."""
        if not keys:
            return
        try:
            if fence is None:
                await self._redis.delete(*keys)
            else:
                await self._fence([fence_key(k) for k in keys], fence, keys, hot=hot)
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

    async def bump(self, scope: str, owner: str, *, fence: int | None = None) -> None:
        """A new generation; `fence` (the writer's WAL position) keeps replica reads older than
        the change from filling the new generation's keys (`set_at(..., fence=generation_key)`)."""
        await self.bump_many(scope, {owner: fence})

    async def bump_many(self, scope: str, fences: Mapping[str, int | None]) -> None:
        """`bump` of each owner (with its fence, or None), in one round trip: a consumer's batch
        touches many merchants, and a call each was a third of the analytics consumer's CPU."""
        by_position: dict[int, list[str]] = {}
        for owner, fence in fences.items():
            if fence is not None:
                by_position.setdefault(fence, []).append(generation_fence(scope, owner))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                # The fences first: a reader that sees a new generation must find it fenced.
                for position, keys in by_position.items():
                    pipe.eval(_FENCE, len(keys), *keys, _position(position), self.warm_ttl, len(keys))
                for owner in fences:
                    pipe.incr(generation_key(scope, owner))
                await pipe.execute()
        except (RedisError, OSError) as error:
            self._failed("bump", error)

    async def _fence(self, fences: list[str], position: int, deleted: tuple[str, ...], *, hot: bool) -> None:
        ttl = self.hot_ttl if hot else self.warm_ttl
        await self._redis.eval(
            _FENCE, len(fences) + len(deleted), *fences, *deleted, _position(position), ttl, len(fences)
        )

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
