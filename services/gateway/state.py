"""The long-lived resources one gateway process shares across requests."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from libs.common.cache import Cache
from libs.common.config import Config
from services.gateway.clients import Backends


@dataclass
class GatewayState:
    config: Config
    backends: Backends
    cache: Cache

    @classmethod
    def from_config(cls, config: Config) -> GatewayState:
        # Neither opens a connection here: channels and the Redis pool connect on first use,
        # inside the event loop that serves the requests.
        return cls(
            config=config,
            backends=Backends(config),
            cache=Cache(
                config.redis_url,
                hot_ttl=config.cache_hot_ttl_seconds,
                warm_ttl=config.cache_warm_ttl_seconds,
            ),
        )

    async def close(self) -> None:
        await self.backends.close()
        await self.cache.close()


def state_of(conn: HTTPConnection) -> GatewayState:
    state = conn.app.state.gateway
    assert isinstance(state, GatewayState)
    return state
