"""A real primary and a real streaming standby for the replica tests, and the platform on them.

The package brings an embedded primary and its standby of its own, for its tests only: the rest
of the suite streams no WAL to a standby, and with the suite on an external server
(CHECKOUT_DATABASE_URL) there would be nothing to stream from. NATS and Redis are the session's.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from libs.common.config import SERVICES, Config, Endpoint, with_database
from libs.common.replica_config import ROLES
from libs.common.service import Runtime
from services.analytics.service import SPEC as ANALYTICS
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from services.invoice.service import SPEC as INVOICE
from services.merchant.service import SPEC as MERCHANT
from tests.common.support import ethereum_account_xpub, poll
from tests.conftest import make_config
from tests.services import running
from tools.devservers import DevServers, Servers
from tools.devservers.standby import Standby

XPUB = ethereum_account_xpub("test test test test test test test test test test test junk", 11)
# Nothing listens on port 1: the services a test does not start look down.
DEAD_ADDRESS = "127.0.0.1:1"
INVOICE_BODY = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
}


@dataclass
class Replicated:
    """The primary every test's databases live on, and its standby."""

    primary_url: str
    standby: Standby

    async def on_standby(self, sql: str) -> Any:
        conn = await asyncpg.connect(self.standby.url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def pause(self) -> None:
        await self.on_standby("SELECT pg_wal_replay_pause()")

    async def resume(self) -> None:
        await self.on_standby("SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="package")
def replicated() -> Iterator[Replicated]:
    # An embedded primary of its own, outside /tmp/pytest-of-<user>: every pytest session started
    # next to this one makes that directory private again, which cuts the servers' own user off
    # their files (a base backup half done, a standby reconnecting to the primary's socket).
    root = Path(tempfile.mkdtemp(prefix="checkout-replicas-"))
    owner = DevServers(root, replicas=1, embedded_postgres=True)
    try:
        with owner as own:
            yield Replicated(own.database_url, owner.standbys[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def replica_config(servers: Servers, replicated: Replicated, **overrides: Any) -> Config:
    """A fresh test configuration on the replicated primary, every role of every shard on the
    standby (each shard's database there is named as on the primary)."""
    # These tests read as fast as they can: the rate limits must not be what they measure.
    unlimited = {f"rate_limit_{plan}": "1000000/minute" for plan in ("free", "pro", "enterprise", "checkout")}
    config = make_config(servers, database_url=replicated.primary_url, **{**unlimited, **overrides})
    replicas = {
        shard: {
            role: (with_database(replicated.standby.url, urlsplit(config.shard_dsn(shard)).path[1:]),)
            for role in ROLES
        }
        for shard in config.shards
    }
    return dataclasses.replace(config, shard_replicas=replicas)


@dataclass
class Platform:
    config: Config
    runtimes: dict[str, Runtime]
    http: httpx.AsyncClient
    replicated: Replicated
    gateway: GatewayState
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def invoice(self) -> Runtime:
        return self.runtimes["invoice"]

    async def merchant(self) -> tuple[uuid.UUID, dict[str, str]]:
        """A merchant with an Ethereum wallet, and its API key's headers."""
        created = await self.http.post(
            "/v1/merchants",
            json={
                "business_name": "Shop",
                "contact_email": f"shop-{uuid.uuid4().hex[:8]}@example.com",
                "wallets": {"ethereum": XPUB},
            },
            headers=self.admin,
        )
        assert created.status_code == 201, created.text
        merchant_id = created.json()["id"]
        key = await self.http.post(
            f"/v1/merchants/{merchant_id}/api-keys", json={"name": "t"}, headers=self.admin
        )
        assert key.status_code == 201, key.text
        return uuid.UUID(merchant_id), {"Authorization": f"Bearer {key.json()['key']}"}

    async def create_invoice(self, headers: dict[str, str]) -> httpx.Response:
        created = await self.http.post("/v1/invoices", json=INVOICE_BODY, headers=headers)
        assert created.status_code == 201, created.text
        return created

    async def replicas_serving(self, runtime: Runtime | None = None, *, within: float = 0.05) -> None:
        """Waits until every shard's replica is up and at most `within` seconds behind."""
        router = (runtime or self.invoice).replicas

        def ready() -> bool:
            statuses = [st for shard in self.config.shards for st in router.status(shard)]
            return bool(statuses) and all(
                st.up and st.lag_seconds is not None and st.lag_seconds <= within for st in statuses
            )

        await poll(ready, what="the replicas to serve")


def _endpoints(config: Config, runtimes: dict[str, Runtime]) -> dict[str, tuple[Endpoint, ...]]:
    """Every service at its running instance; the ones not (yet) started look down."""
    endpoints: dict[str, tuple[Endpoint, ...]] = {}
    for name in SERVICES:
        runtime = runtimes.get(name)
        address = (
            runtime.server.address if runtime is not None and runtime.server is not None else DEAD_ADDRESS
        )
        endpoints[name] = (Endpoint(frozenset(config.shards), address),)
    return endpoints


PlatformFactory = Callable[..., AbstractAsyncContextManager[Platform]]


@pytest.fixture
def platform_factory(servers: Servers, replicated: Replicated) -> PlatformFactory:
    """`async with platform_factory(**config overrides) as p`: the merchant, invoice and analytics
    services in-process on a replicated configuration, and the gateway in front of them."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Platform]:
        config = replica_config(servers, replicated, **overrides)
        async with AsyncExitStack() as stack:
            runtimes: dict[str, Runtime] = {}
            # The merchant service first: the invoice service asks it for what its projection lacks.
            for spec in (MERCHANT, INVOICE, ANALYTICS):
                config = dataclasses.replace(config, endpoints=_endpoints(config, runtimes))
                runtime, _ = await stack.enter_async_context(running(spec, config))
                runtimes[spec.name] = runtime
            endpoints = _endpoints(config, runtimes)
            app = create_app(dataclasses.replace(config, endpoints=endpoints))
            transport = httpx.ASGITransport(app=app)
            # The lifespan too: the gateway hears invoice events (its views) and revoked keys on NATS.
            async with app.router.lifespan_context(app):
                state = app.state.gateway
                assert isinstance(state, GatewayState)
                await state.listener.subscribed.wait()
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://gateway", timeout=30
                ) as http:
                    try:
                        admin = {"Authorization": f"Bearer {config.admin_token}"}
                        yield Platform(config, runtimes, http, replicated, state, admin)
                    finally:
                        # A test that paused replay must not leave the standby paused for the next.
                        await replicated.resume()

    return start
