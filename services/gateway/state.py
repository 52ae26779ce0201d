"""The long-lived resources one gateway process shares across requests."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from libs.common.cache import Cache
from libs.common.config import Config
from services.gateway.clients import Backends
from services.gateway.keycache import KeyCache
from services.gateway.listener import Listener
from services.gateway.pages.live import LiveInvoices
from services.gateway.ratelimit import RateLimiter
from services.gateway.views import ViewCache


@dataclass
class GatewayState:
    config: Config
    backends: Backends
    cache: Cache
    keys: KeyCache
    limiter: RateLimiter
    views: ViewCache
    live: LiveInvoices
    listener: Listener
    # Where payers and merchants reach this gateway: the base of the links in invoices.
    public_url: str
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config) -> GatewayState:
        # Nothing connects here: channels, Redis and NATS connect inside the event loop that
        # serves the requests (start(), or on first use).
        backends = Backends(config)
        keys = KeyCache(
            backends, ttl_seconds=config.api_key_cache_seconds, touch_seconds=config.api_key_touch_seconds
        )
        views = ViewCache(ttl_seconds=config.cache_hot_ttl_seconds)
        live = LiveInvoices()
        return cls(
            config=config,
            backends=backends,
            cache=Cache(
                config.redis_url,
                hot_ttl=config.cache_hot_ttl_seconds,
                warm_ttl=config.cache_warm_ttl_seconds,
            ),
            keys=keys,
            limiter=RateLimiter(
                config.redis_url,
                plans=config.plan_rate_limits(),
                auth_failures=config.rate_limit_auth_failures,
                checkout=config.rate_limit_checkout,
                timeout_seconds=config.rate_limit_redis_timeout_seconds,
            ),
            views=views,
            live=live,
            listener=Listener(keys, views, live, config.nats_url, config.subject_prefix),
            public_url=config.public_url(),
        )

    async def start(self) -> None:
        """The shard map read, then the background work: hearing revocations, writing key use in
        batches, and keeping the shard map fresh."""
        await self.backends.open()
        self._tasks = [
            asyncio.create_task(self.listener.run(), name="gateway-listener"),
            asyncio.create_task(self.keys.touch_loop(), name="gateway-key-touches"),
            asyncio.create_task(self.backends.directory.run(), name="gateway-shard-directory"),
        ]

    async def close(self) -> None:
        self.live.end_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.keys.flush_touches()
        await self.listener.close()
        await self.backends.close()
        await self.cache.close()
        await self.limiter.close()


def state_of(conn: HTTPConnection) -> GatewayState:
    state = conn.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
