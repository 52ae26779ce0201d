"""Rate limits in Redis (the `limits` library's storage and notation): per API key by its
merchant's plan, per client IP for failed authentication, and per IP on the public checkout.

Fixed windows aligned to the clock (a minute limit resets at each full minute), counted with the
storage's atomic increment-and-expire, as limits' FixedWindowRateLimiter counts; the window's
number in the key makes the reset known without asking. A round trip per request was a fifth of
the gateway's time under load, so a key's first request in a window is counted in Redis at once
(which also learns the count so far, and finds an outage at once), and its later ones are
counted here and added to Redis every FLUSH_SECONDS in one increment per key, each flush reading
back the total of every replica. The decision uses that total plus this replica's unsent count:
exact on one replica, and across N replicas a key can overshoot by what N-1 of them admit
within one flush interval.

Every limited response says where the caller stands (`RateLimit-Limit`, `-Remaining`, `-Reset`
in seconds); a refused one is 429 `rate_limited` with `Retry-After`. Redis down must not take
the API down with it: the limiter then lets requests through, counts that in
`gateway_rate_limiter_unavailable_total`, and leaves Redis alone for a short back-off so a dead
server does not add a timeout to every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

    def refusal(self, what: str, limit: str) -> ApiError:
        REFUSED.labels(limit).inc()
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


FLUSH_SECONDS = 0.05


@dataclass
class _Window:
    """One identity's count in one window, as this replica knows it."""

    expiry: int
    known: int  # the total in Redis at the last flush (every replica's)
    pending: int = 0  # counted here since, not yet in Redis
    sending: int = 0  # on its way to Redis in a flush
    # Set while the window's first request asks Redis; requests that arrive meanwhile wait for it.
    first: asyncio.Future[None] | None = None


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
        self._windows: dict[str, _Window] = {}
        self._window_number: dict[str, int] = {}
        self._flusher: asyncio.Task[None] | None = None

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
        number = int(now // expiry)
        key = item.key_for(*identity, str(number))
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(expiry, known=0)
            self._window_number[key] = number
            window.first = asyncio.get_running_loop().create_future()
            try:
                window.known = await (self.storage.incr(key, expiry) if hit else self.storage.get(key))
            except Exception as error:  # limits wraps the driver's errors as StorageError
                del self._windows[key], self._window_number[key]
                self._failed(error)
                return None
            finally:
                window.first.set_result(None)
                window.first = None
        else:
            if hit:
                window.pending += 1
                self._ensure_flusher()
            if window.first is not None:
                await window.first
            if key not in self._windows:  # the first request found Redis down
                return None
        count = window.known + window.sending + window.pending
        allowed = count <= item.amount if hit else count < item.amount
        reset = max(1, math.ceil((number + 1) * expiry - now))
        return Quota(
            limit=item.amount, remaining=max(0, item.amount - count), reset_seconds=reset, allowed=allowed
        )

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="rate-limit-flush")

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        """Adds this replica's unsent counts to Redis and learns every replica's totals: one
        round trip for every window with counts to send (each key's increment is `limits`' own
        script, pipelined), not one per key, which under load across many keys was a Redis call
        per request."""
        now = time.time()
        sending: list[tuple[str, _Window]] = []
        for key, window in list(self._windows.items()):
            if (self._window_number[key] + 1) * window.expiry < now and window.pending == 0:
                del self._windows[key], self._window_number[key]  # a past window: nothing left to say
                continue
            if window.pending == 0:
                continue
            window.sending, window.pending = window.pending, 0
            sending.append((key, window))
        if not sending:
            return
        try:
            totals = await self._incr_all([(key, w.expiry, w.sending) for key, w in sending])
            for (_, window), total in zip(sending, totals, strict=True):
                window.known = int(total)
        except Exception as error:
            for _, window in sending:
                window.pending += window.sending
            self._failed(error)
        finally:
            for _, window in sending:
                window.sending = 0

    async def _incr_all(self, increments: list[tuple[str, int, int]]) -> list[int]:
        """`storage.incr` for each (key, expiry, amount), in one pipeline."""
        if len(increments) == 1:
            key, expiry, amount = increments[0]
            return [await self.storage.incr(key, expiry, amount=amount)]
        bridge: Any = self.storage.bridge
        if getattr(bridge, "lua_incr_expire", None) is None:  # registered on the storage's first use
            bridge.register_scripts()
        pipe = bridge.get_connection().pipeline(transaction=False)
        for key, expiry, amount in increments:
            await bridge.lua_incr_expire([bridge.prefixed_key(key)], [expiry, amount], client=pipe)  # queued
        results: list[int] = await pipe.execute()
        return results

    def _failed(self, error: Exception) -> None:
        UNAVAILABLE.inc()
        if time.monotonic() >= self._down_until:
            log.warning("rate limiter cannot reach Redis, letting requests through for %.0fs: %s",
                        self._backoff, error)  # fmt: skip
        self._down_until = time.monotonic() + self._backoff

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        try:
            await self.flush()
        except Exception:  # a last flush is best effort
            log.debug("rate limiter final flush failed", exc_info=True)
        try:
            await self.storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]
        except Exception:  # closing a pool that never connected, or is gone, is fine
            log.debug("rate limiter storage close failed", exc_info=True)
