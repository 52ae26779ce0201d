"""Rate limits in Redis (the `limits` library's storage and notation): per API key by its
merchant's plan, per client IP for failed authentication, and per IP on the public checkout.

Fixed windows aligned to the clock (a minute limit resets at each full minute), counted with the
storage's atomic increment-and-expire: one round trip to Redis per request gives the decision,
the count left (`RateLimit-Remaining`) and the reset (from the window itself), where a sliding
window needs a second trip for its standing. limits' FixedWindowRateLimiter counts the same way;
putting the window's number in the key is what makes the reset known without asking.

Every limited response says where the caller stands (`RateLimit-Limit`, `-Remaining`, `-Reset`
in seconds); a refused one is 429 `rate_limited` with `Retry-After`. Redis down must not take
the API down with it: the limiter then lets requests through, counts that in
`gateway_rate_limiter_unavailable_total`, and leaves Redis alone for a short back-off so a dead
server does not add a timeout to every request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from prometheus_client import Counter

from libs.common.cache import PREFIX
from services.gateway.errors import ApiError

log = logging.getLogger("checkout.gateway.ratelimit")

UNAVAILABLE = Counter(
    "gateway_rate_limiter_unavailable_total",
    "Requests let through unchecked because Redis could not be asked (the limiter fails open).",
)
REFUSED = Counter("gateway_rate_limited_total", "Requests refused with 429, by limit.", ["limit"])


@dataclass(frozen=True)
class Quota:
    """Where a caller stands against one limit after this request."""

    limit: int
    remaining: int
    reset_seconds: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }

    def refusal(self, what: str) -> ApiError:
        retry = max(1, self.reset_seconds)
        return ApiError(
            "rate_limited",
            f"too many requests {what}; retry in {retry} s",
            headers={**self.headers(), "Retry-After": str(retry)},
        )


def storage_url(redis_url: str) -> str:
    """The `limits` spelling of a redis-py URL."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


class RateLimiter:
    def __init__(
        self,
        redis_url: str,
        *,
        plans: Mapping[str, str],
        auth_failures: str,
        checkout: str,
        timeout_seconds: float = 0.25,
        backoff_seconds: float = 5.0,
    ) -> None:
        self.plans: dict[str, RateLimitItem] = {plan: parse(rate) for plan, rate in plans.items()}
        self.auth_failures = parse(auth_failures)
        self.checkout = parse(checkout)
        self.storage = RedisStorage(
            storage_url(redis_url),
            implementation="redispy",
            key_prefix=f"{PREFIX}ratelimit",
            wrap_exceptions=True,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
        )
        self._backoff = backoff_seconds
        self._down_until = 0.0

    def plan_limit(self, plan: str) -> RateLimitItem:
        return self.plans.get(plan) or self.plans["free"]

    async def hit(self, item: RateLimitItem, *identity: str) -> Quota | None:
        """Counts one request against `item` for `identity`; None when Redis cannot say."""
        return await self._count(item, identity, hit=True)

    async def peek(self, item: RateLimitItem, *identity: str) -> Quota | None:
        """Where `identity` stands without counting a request; None when Redis cannot say."""
        return await self._count(item, identity, hit=False)

    async def _count(self, item: RateLimitItem, identity: tuple[str, ...], *, hit: bool) -> Quota | None:
        if time.monotonic() < self._down_until:
            UNAVAILABLE.inc()
            return None
        now = time.time()
        expiry = item.get_expiry()
        window = int(now // expiry)
        key = item.key_for(*identity, str(window))
        try:
            count = await (self.storage.incr(key, expiry) if hit else self.storage.get(key))
        except Exception as error:  # limits wraps the driver's errors as StorageError
            self._failed(error)
            return None
        allowed = count <= item.amount if hit else count < item.amount
        reset = max(1, math.ceil((window + 1) * expiry - now))
        return Quota(limit=item.amount, remaining=max(0, item.amount - count), reset_seconds=reset, allowed=allowed)

    def _failed(self, error: Exception) -> None:
        UNAVAILABLE.inc()
        if time.monotonic() >= self._down_until:
            log.warning("rate limiter cannot reach Redis, letting requests through for %.0fs: %s",
                        self._backoff, error)  # fmt: skip
        self._down_until = time.monotonic() + self._backoff

    async def close(self) -> None:
        try:
            await self.storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]
        except Exception:  # closing a pool that never connected, or is gone, is fine
            log.debug("rate limiter storage close failed", exc_info=True)
