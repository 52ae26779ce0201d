"""The merchant service's read models rebuilt from its event store equal the live ones, and a
rebuild keeps the operational records no event describes (webhook deliveries and attempts)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.config import Config
from libs.common.protoconv import struct
from services.merchant import projections
from services.merchant.service import SPEC
from tests.common.eventsource import EventSource, event_source
from tests.merchant.test_webhook_delivery import create_endpoint, new_invoice, settled
from tests.merchant.webhook_support import Receiver, new_merchant, receiver, stub_of
from tests.services import running

READ_MODELS = {
    "merchants": "SELECT * FROM merchants ORDER BY id",
    "api_keys": "SELECT * FROM api_keys ORDER BY id",
    "webhook_endpoints": "SELECT * FROM webhook_endpoints ORDER BY id",
    "notification_templates": "SELECT * FROM notification_templates ORDER BY id",
}
OPERATIONAL = {
    "webhook_deliveries": "SELECT * FROM webhook_deliveries ORDER BY id",
    "webhook_attempts": "SELECT * FROM webhook_attempts ORDER BY delivery_id, attempt",
    "webhook_endpoint_health": "SELECT * FROM webhook_endpoint_health ORDER BY endpoint_id",
}


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, webhook_allow_loopback=True, webhook_poll_seconds=0.2)


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as started:
        yield started


async def rows(pool: Any, queries: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in queries.items()}


async def test_rebuilt_merchant_read_models_equal_the_live_ones_and_keep_delivery_logs(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config, tag="rebuild")
        await stub.UpdateMerchant(
            pb.UpdateMerchantRequest(
                merchant_id=str(merchant),
                business_name="Renamed",
                settings=struct({"rate_spread_percent": "1"}),
            )
        )
        kept = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                merchant_id=str(merchant), name="kept", operator=True, use_default_permissions=True
            )
        )
        revoked = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                merchant_id=str(merchant), name="revoked", operator=True, use_default_permissions=True
            )
        )
        await stub.RevokeApiKey(
            pb.RevokeApiKeyRequest(merchant_id=str(merchant), api_key_id=revoked.api_key.id)
        )
        endpoint = (await create_endpoint(stub, merchant, hook.url())).endpoint
        await new_invoice(source, merchant)
        await settled(stub, merchant, endpoint.id)  # a delivery and its attempt now exist
        await stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                merchant_id=str(merchant), endpoint_id=endpoint.id, timeout_seconds=5
            )
        )
        await stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(merchant_id=str(merchant), endpoint_id=endpoint.id)
        )
        template = await stub.CreateNotificationTemplate(
            pb.CreateNotificationTemplateRequest(
                merchant_id=str(merchant),
                event_type="invoice.paid",
                subject="Paid: ${title}",
                body_template="Thanks",
            )
        )
        await stub.UpdateNotificationTemplate(
            pb.UpdateNotificationTemplateRequest(
                merchant_id=str(merchant), template_id=template.id, is_active=False
            )
        )
        assert kept.api_key.id

        pool = runtime.pool_for(merchant)
        live, operational = await rows(pool, READ_MODELS), await rows(pool, OPERATIONAL)
        assert [len(live[name]) for name in READ_MODELS] == [1, 2, 1, 1]
        assert len(operational["webhook_deliveries"]) == 1 and len(operational["webhook_attempts"]) == 1
        # Damage the read models, then rebuild them from the events.
        await pool.execute("UPDATE merchants SET business_name = 'wrong', settings = '{}'")
        await pool.execute("UPDATE api_keys SET status = 'active'")
        await pool.execute(
            "UPDATE webhook_endpoints SET url = 'http://wrong.example', previous_secret_ref = NULL"
        )
        await pool.execute("UPDATE notification_templates SET is_active = true")
        async with pool.acquire() as conn, conn.transaction():
            assert await projections.rebuild(conn, runtime.store) >= 9
        assert await rows(pool, READ_MODELS) == live
        assert await rows(pool, OPERATIONAL) == operational
