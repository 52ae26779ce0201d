"""All four services in this process, on free ports, with the gateway in front over ASGI: the
whole platform for tests that need every service but not separate processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc
import httpx

from libs.common.composition import ServiceSpec
from libs.common.config import SERVICES, Config, Endpoint
from libs.common.service import Runtime
from services.analytics.service import SPEC as ANALYTICS
from services.customer.service import SPEC as CUSTOMER
from services.gateway.app import create_app
from services.gateway.state import GatewayState
from services.invoice.service import SPEC as INVOICE
from services.merchant.service import SPEC as MERCHANT
from tests.services import running
from tools.devstack import DEMO_ETHEREUM_XPUB

SPECS: Mapping[str, ServiceSpec] = {
    "merchant": MERCHANT,
    "invoice": INVOICE,
    "customer": CUSTOMER,
    "analytics": ANALYTICS,
}


@dataclass
class Platform:
    config: Config
    runtimes: dict[str, Runtime]
    channels: dict[str, grpc.aio.Channel]
    http: httpx.AsyncClient

    @property
    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.admin_token}"}

    async def onboard(self, tag: str = "") -> tuple[dict[str, Any], str]:
        """A merchant with an Ethereum xpub, and a secret key of it with every permission."""
        email = f"shop-{tag or uuid.uuid4().hex[:8]}@shop.test"
        created = await self.http.post(
            "/v1/merchants",
            json={
                "business_name": "Test shop",
                "contact_email": email,
                "wallets": {"ethereum": DEMO_ETHEREUM_XPUB},
            },
            headers=self.operator,
        )
        assert created.status_code == 201, created.text
        issued = await self.http.post(
            f"/v1/merchants/{created.json()['id']}/api-keys", json={"name": "k"}, headers=self.operator
        )
        assert issued.status_code == 201, issued.text
        return created.json(), issued.json()["key"]


def _at(runtimes: Mapping[str, Runtime], config: Config) -> dict[str, tuple[Endpoint, ...]]:
    return {
        name: (Endpoint(frozenset(config.shards), runtime.server.address),)  # type: ignore[union-attr]
        for name, runtime in runtimes.items()
    }


@asynccontextmanager
async def platform(config: Config, specs: Mapping[str, ServiceSpec] = SPECS) -> AsyncIterator[Platform]:
    async with AsyncExitStack() as stack:
        runtimes: dict[str, Runtime] = {}
        channels: dict[str, grpc.aio.Channel] = {}
        for name in SERVICES:  # the merchant service first: the invoice service may ask it
            runtimes[name], channels[name] = await stack.enter_async_context(
                running(specs[name], replace(config, endpoints=_at(runtimes, config)))
            )
        app = create_app(replace(config, endpoints=_at(runtimes, config)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http:
            try:
                yield Platform(config, runtimes, channels, http)
            finally:
                state = app.state.gateway
                assert isinstance(state, GatewayState)
                await state.close()
