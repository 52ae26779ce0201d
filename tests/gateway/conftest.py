"""The gateway against the real services: the four of them run in-process once per session on
free ports (fresh shard databases, a fresh JetStream stream, the session's dev chain), and each
test gets its own gateway app in front of them, served in-process through httpx. Tests keep
apart by merchant (each makes its own) and by client address (each has its own, so per-IP
limits do not leak between tests)."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from libs.common.config import SERVICES, Config, Endpoint
from libs.common.networks import parse_networks
from libs.common.service import Runtime
from services.analytics.service import SPEC as ANALYTICS_SPEC
from services.customer.service import SPEC as CUSTOMER_SPEC
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from services.invoice.service import SPEC as INVOICE_SPEC
from services.merchant.service import SPEC as MERCHANT_SPEC
from tests.conftest import make_config
from tools.devchain.testing import EvmChain
from tools.devservers import Servers
from tools.devstack import DEMO_ETHEREUM_XPUB

# Nothing listens on port 1: connecting fails at once, which is how a down shard looks.
DEAD_ADDRESS = "127.0.0.1:1"
_clients = itertools.count(1)


@dataclass
class Platform:
    config: Config  # endpoints pointing at the running services
    runtimes: dict[str, Runtime]

    @property
    def admin_token(self) -> str:
        return self.config.admin_token

    def gateway_config(self, **overrides: Any) -> Config:
        return dataclasses.replace(self.config, **overrides)


# Package-scoped: the services and their pools stop when the gateway tests are done, before the
# next package starts servers of its own on the same PostgreSQL.
@pytest.fixture(scope="package")
async def platform(servers: Servers, evm_chain: EvmChain) -> AsyncIterator[Platform]:
    base = make_config(
        servers,
        networks=parse_networks(evm_chain.networks_json(confirmations=2, poll_seconds=0.1)),
        ethereum_chain_id=evm_chain.chain_id,
        webhook_allow_loopback=True,
        invoice_min_expiry_seconds=1,
        pool_max_size=5,
    )
    runtimes: dict[str, Runtime] = {}
    endpoints: dict[str, tuple[Endpoint, ...]] = {}
    try:
        # The merchant service first: the invoice service asks it about merchants it has not seen.
        specs = (
            ("merchant", MERCHANT_SPEC),
            ("invoice", INVOICE_SPEC),
            ("customer", CUSTOMER_SPEC),
            ("analytics", ANALYTICS_SPEC),
        )
        for name, spec in specs:
            runtime = Runtime(
                spec, dataclasses.replace(base, grpc_listen="127.0.0.1:0", endpoints=dict(endpoints))
            )
            await runtime.start()
            assert runtime.server is not None
            runtimes[name] = runtime
            endpoints[name] = (Endpoint(frozenset(base.shards), runtime.server.address),)
        assert set(endpoints) == set(SERVICES)
        yield Platform(dataclasses.replace(base, endpoints=endpoints), runtimes)
    finally:
        for runtime in reversed(list(runtimes.values())):
            await runtime.stop()


def everything_at(address: str, shards: range) -> dict[str, tuple[Endpoint, ...]]:
    return {svc: (Endpoint(frozenset(shards), address),) for svc in SERVICES}


def with_shard_down(config: Config, shard: int) -> dict[str, tuple[Endpoint, ...]]:
    """The platform's endpoints, except that `shard` of every service is unreachable."""
    out: dict[str, tuple[Endpoint, ...]] = {}
    for svc, endpoints in config.endpoints.items():
        address = endpoints[0].address
        out[svc] = (
            Endpoint(frozenset(s for s in config.shards if s != shard), address),
            Endpoint(frozenset({shard}), DEAD_ADDRESS),
        )
    return out


@asynccontextmanager
async def serve(app: Starlette, client_ip: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on `app`, with the app's lifespan run around it (key revocations heard
    on NATS, key use written on the way out)."""
    n = next(_clients)
    ip = client_ip or f"127.0.{n // 250}.{n % 250 + 1}"
    transport = httpx.ASGITransport(app=app, client=(ip, 40000 + n % 20000))
    async with app.router.lifespan_context(app):
        state = app.state.gateway
        assert isinstance(state, GatewayState)
        await state.listener.subscribed.wait()
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield client


def state_of(app: Starlette) -> GatewayState:
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    return state


@pytest.fixture
def app(platform: Platform) -> Starlette:
    return create_app(platform.config)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


@pytest.fixture
async def offline(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose services are all down."""
    config = platform.gateway_config(endpoints=everything_at(DEAD_ADDRESS, platform.config.shards))
    async with serve(create_app(config)) as c:
        yield c


@pytest.fixture
def operator(platform: Platform) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.admin_token}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Merchant:
    id: str
    key: str
    email: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.key)


def unique_email(label: str = "shop") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@example.com"


async def new_merchant(
    client: httpx.AsyncClient,
    operator: Mapping[str, str],
    *,
    email: str | None = None,
    permissions: list[str] | None = None,
    key_type: str = "secret",
    plan_type: str | None = None,
    wallet: bool = True,
) -> Merchant:
    """A merchant (with the demo Ethereum wallet) and one API key of it."""
    email = email or unique_email()
    body: dict[str, Any] = {"business_name": "Shop", "contact_email": email}
    if wallet:
        body["wallets"] = {"ethereum": DEMO_ETHEREUM_XPUB}
    if plan_type:
        body["plan_type"] = plan_type
    created = await client.post("/v1/merchants", json=body, headers=dict(operator))
    assert created.status_code == 201, created.text
    merchant_id = created.json()["id"]
    key = await new_key(client, operator, merchant_id, permissions=permissions, key_type=key_type)
    return Merchant(merchant_id, key, email)


async def new_key(
    client: httpx.AsyncClient,
    operator: Mapping[str, str],
    merchant_id: str,
    *,
    permissions: list[str] | None = None,
    key_type: str = "secret",
    **extra: Any,
) -> str:
    body: dict[str, Any] = {"name": "test", "key_type": key_type, **extra}
    if permissions is not None:
        body["permissions"] = permissions
    issued = await client.post(f"/v1/merchants/{merchant_id}/api-keys", json=body, headers=dict(operator))
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    assert isinstance(key, str)
    return key


@pytest.fixture
async def merchant(client: httpx.AsyncClient, operator: dict[str, str]) -> Merchant:
    return await new_merchant(client, operator)


INVOICE = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
}


async def create_invoice(client: httpx.AsyncClient, merchant: Merchant, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/invoices", json={**INVOICE, **overrides}, headers=merchant.auth)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
