from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from libs.common.config import SERVICES, Config, Endpoint
from libs.common.devservers import Servers
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from tests.gateway.fakes import FakeServices

ADMIN_TOKEN = "test-admin"
REDIS_URL = ""  # set per test to the session's Redis (embedded, or CHECKOUT_REDIS_URL)
# Nothing listens on port 1: connecting fails at once, which is how a down shard looks.
DEAD_ADDRESS = "127.0.0.1:1"
SHARDS = 2


def make_config(endpoints: dict[str, tuple[Endpoint, ...]] | None = None) -> Config:
    return Config(
        admin_token=ADMIN_TOKEN,
        redis_url=REDIS_URL,
        shard_count=SHARDS,
        endpoints=endpoints or everything_at(DEAD_ADDRESS),
    )


def everything_at(address: str) -> dict[str, tuple[Endpoint, ...]]:
    return {svc: (Endpoint(frozenset(range(SHARDS)), address),) for svc in SERVICES}


def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
    # ASGITransport runs no lifespan, so close what the requests opened.
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    await state.close()


@pytest.fixture(autouse=True)
def _session_redis(servers: Servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REDIS_URL", servers.redis_url)


@pytest.fixture
async def offline() -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose services are all down."""
    async for client in serve(create_app(make_config())):
        yield client


@pytest.fixture
async def services() -> AsyncIterator[FakeServices]:
    fakes = FakeServices()
    await fakes.start()
    yield fakes
    await fakes.stop()


@pytest.fixture
def app(services: FakeServices) -> Starlette:
    return create_app(make_config(everything_at(services.address)))


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async for c in serve(app):
        yield c


@dataclass(frozen=True)
class Merchant:
    id: str
    key: str


async def new_merchant(
    client: httpx.AsyncClient,
    email: str = "shop@example.com",
    *,
    permissions: list[str] | None = None,
    key_type: str = "secret",
) -> Merchant:
    created = await client.post(
        "/v1/merchants",
        json={"business_name": "Shop", "contact_email": email},
        headers=operator(),
    )
    assert created.status_code == 201, created.text
    merchant_id = created.json()["id"]
    body: dict[str, object] = {"name": "test", "key_type": key_type}
    if permissions is not None:
        body["permissions"] = permissions
    issued = await client.post(f"/v1/merchants/{merchant_id}/api-keys", json=body, headers=operator())
    assert issued.status_code == 201, issued.text
    return Merchant(merchant_id, issued.json()["key"])


@pytest.fixture
async def merchant(client: httpx.AsyncClient) -> Merchant:
    return await new_merchant(client)
