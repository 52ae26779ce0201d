"""The SSRF guard in the merchant service: private, loopback and metadata targets are refused when
an endpoint is saved and again when a delivery is sent (DNS answers change between the two)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from services.merchant.service import SPEC, MerchantBuilt
from tests.common.eventsource import EventSource, event_source, invoice_created
from tests.common.support import poll
from tests.merchant.webhook_support import Reply, new_merchant, receiver, stub_of
from tests.services import running

REFUSED = [
    "http://10.0.0.7/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://[::ffff:10.0.0.1]/hook",
    "http://0x7f.1/hook",  # 127.0.0.1 in disguise; loopback is not allowed by default
    "http://127.0.0.1:8080/hook",
    "ftp://example.com/hook",
]


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


@pytest.mark.parametrize("url", REFUSED)
async def test_private_loopback_and_metadata_urls_are_refused_at_creation(config: Config, url: str) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateWebhookEndpoint(
                pb.CreateWebhookEndpointRequest(merchant_id=str(merchant), url=url, events=["invoice.paid"])
            )
        remote = from_rpc_error(error.value)
        assert remote.code == "invalid_argument"
        assert [d.field for d in remote.details] == ["url"]
        pool = runtime.pool_for(merchant)
        assert await pool.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
        assert (
            await pool.fetchval("SELECT count(*) FROM events WHERE aggregate_type = 'WebhookEndpoint'") == 0
        )


async def test_allow_loopback_does_not_allow_private_or_metadata_and_allowed_ips_narrow_further(
    config: Config,
) -> None:
    loopback = dataclasses.replace(config, webhook_allow_loopback=True)
    async with running(SPEC, loopback) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, loopback)
        ok = await stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(
                merchant_id=str(merchant),
                url="http://127.0.0.1:9/hook",
                events=["*"],
                allowed_ips=["127.0.0.0/8"],
            )
        )
        assert ok.endpoint.allowed_ips == ["127.0.0.0/8"]
        for url, allowed in [
            ("http://10.1.2.3/hook", []),
            ("http://169.254.169.254/", []),
            ("http://127.0.0.1:9/hook", ["203.0.113.0/24"]),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CreateWebhookEndpoint(
                    pb.CreateWebhookEndpointRequest(
                        merchant_id=str(merchant), url=url, events=["*"], allowed_ips=allowed
                    )
                )
            assert [d.field for d in from_rpc_error(error.value).details] == ["url"], url
        with pytest.raises(grpc.aio.AioRpcError) as moved:
            await stub.UpdateWebhookEndpoint(
                pb.UpdateWebhookEndpointRequest(
                    merchant_id=str(merchant), endpoint_id=ok.endpoint.id, url="http://10.9.9.9/hook"
                )
            )
        assert [d.field for d in from_rpc_error(moved.value).details] == ["url"]


async def test_a_name_that_resolves_to_a_private_address_at_delivery_time_is_refused(
    config: Config, source: EventSource
) -> None:
    loopback = dataclasses.replace(config, webhook_allow_loopback=True, webhook_poll_seconds=0.2)
    answers = {"hooks.shop.test": ["127.0.0.1"]}

    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    async with receiver() as hook, running(SPEC, loopback) as (runtime, channel):
        MerchantBuilt.of(runtime).dispatcher.resolver = resolve
        stub = stub_of(channel)
        merchant = await new_merchant(stub, loopback)
        endpoint = await stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(
                merchant_id=str(merchant), url=hook.url(host="hooks.shop.test"), events=["invoice.created"]
            )
        )
        # DNS rebinding: the name now points into the private network.
        answers["hooks.shop.test"] = ["10.20.30.40"]
        invoice_id, event = invoice_created(merchant, total="5.00", at=dt.datetime.now(dt.UTC))
        await source.append(invoice_id, "Invoice", event)

        found: list[pb.WebhookDelivery] = []

        async def failed() -> bool:
            nonlocal found
            listed = await stub.ListWebhookDeliveries(
                pb.ListWebhookDeliveriesRequest(merchant_id=str(merchant), endpoint_id=endpoint.endpoint.id)
            )
            found = list(listed.deliveries)
            return len(found) == 1 and found[0].status == "failed"

        await poll(failed, what="the refused delivery")
        [delivery] = found
        assert delivery.attempts == 1 and delivery.response_code == 0
        assert delivery.last_error == "refused: address 10.20.30.40 is private"
        assert hook.received == []

        # Pointing back at an allowed address and redelivering works, with the name as Host.
        answers["hooks.shop.test"] = ["127.0.0.1"]
        await stub.RedeliverWebhook(
            pb.RedeliverWebhookRequest(merchant_id=str(merchant), delivery_id=delivery.id)
        )
        await poll(lambda: len(hook.received) == 1, what="the redelivery")
        assert hook.received[0].headers["host"] == f"hooks.shop.test:{hook.port}"


async def test_a_redirect_is_not_followed_and_not_retried(config: Config, source: EventSource) -> None:
    loopback = dataclasses.replace(config, webhook_allow_loopback=True, webhook_poll_seconds=0.2)
    async with receiver() as hook, running(SPEC, loopback) as (_, channel):
        hook.script = [Reply(302, headers={"Location": "http://169.254.169.254/latest"})]
        stub = stub_of(channel)
        merchant = await new_merchant(stub, loopback)
        endpoint = await stub.CreateWebhookEndpoint(
            pb.CreateWebhookEndpointRequest(
                merchant_id=str(merchant), url=hook.url(), events=["invoice.created"]
            )
        )
        invoice_id, event = invoice_created(merchant, total="5.00", at=dt.datetime.now(dt.UTC))
        await source.append(invoice_id, "Invoice", event)

        async def failed() -> bool:
            listed = await stub.ListWebhookDeliveries(
                pb.ListWebhookDeliveriesRequest(
                    merchant_id=str(merchant), endpoint_id=endpoint.endpoint.id, status="failed"
                )
            )
            return len(listed.deliveries) == 1

        await poll(failed, what="the failed delivery")
        listed = await stub.ListWebhookDeliveries(
            pb.ListWebhookDeliveriesRequest(merchant_id=str(merchant), endpoint_id=endpoint.endpoint.id)
        )
        [delivery] = listed.deliveries
        assert (delivery.attempts, delivery.response_code) == (1, 302)
        assert "redirects are not followed" in delivery.last_error
        assert len(hook.received) == 1
