"""Webhook delivery end to end inside the merchant service: invoice events from a real JetStream,
a real HTTP receiver on loopback, the schedule in real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from services.merchant.service import SPEC
from services.merchant.webhooks import signing
from tests.common.eventsource import EventSource, event_source, invoice_created
from tests.common.support import poll
from tests.merchant.webhook_support import Receiver, Reply, new_merchant, publish, receiver, stub_of
from tests.services import running


@pytest.fixture
def config(config: Config) -> Config:
    # Loopback receivers are allowed explicitly; the retry schedule shortened to fractions of
    # a second (exponential: 0.3 s, 0.6 s, ...).
    return dataclasses.replace(
        config, webhook_allow_loopback=True, webhook_retry_base_seconds=0.3, webhook_poll_seconds=0.2
    )


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as started:
        yield started


async def create_endpoint(
    stub: Any, merchant_id: uuid.UUID, url: str, **fields: Any
) -> pb.WebhookEndpointWithSecret:
    request = pb.CreateWebhookEndpointRequest(merchant_id=str(merchant_id), url=url, **fields)
    if not request.events:
        request.events.append("invoice.created")
    created: pb.WebhookEndpointWithSecret = await stub.CreateWebhookEndpoint(request)
    return created


async def new_invoice(
    source: EventSource, merchant_id: uuid.UUID, email: str = ""
) -> tuple[uuid.UUID, uuid.UUID]:
    invoice_id, event = invoice_created(merchant_id, total="25.00", at=dt.datetime.now(dt.UTC), email=email)
    [stored] = await source.append(invoice_id, "Invoice", event)
    return invoice_id, stored.id


async def deliveries(
    stub: Any, merchant_id: uuid.UUID, endpoint_id: str, **filters: Any
) -> list[pb.WebhookDelivery]:
    listed = await stub.ListWebhookDeliveries(
        pb.ListWebhookDeliveriesRequest(merchant_id=str(merchant_id), endpoint_id=endpoint_id, **filters)
    )
    return list(listed.deliveries)


async def settled(
    stub: Any, merchant_id: uuid.UUID, endpoint_id: str, count: int = 1
) -> list[pb.WebhookDelivery]:
    """Polls until `count` deliveries exist and none is pending; returns them."""
    found: list[pb.WebhookDelivery] = []

    async def done() -> bool:
        nonlocal found
        found = await deliveries(stub, merchant_id, endpoint_id)
        return len(found) == count and all(d.status != "pending" for d in found)

    await poll(done, timeout=20, what=f"{count} settled deliveries")
    return found


async def test_a_subscribed_event_arrives_once_signed_and_verifiable_and_an_unsubscribed_one_does_not(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with receiver() as other, running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        created = await create_endpoint(stub, merchant, hook.url())
        paid_only = await create_endpoint(stub, merchant, other.url(), events=["invoice.paid"])
        assert created.secret.startswith("whsec_") and created.endpoint.status == "active"

        invoice_id, event_id = await new_invoice(source, merchant)
        committed = time.monotonic()
        await poll(lambda: len(hook.received) == 1, what="the webhook POST")
        latency = hook.received[0].at - committed
        print(f"\nwebhook latency (event committed -> receiver got the POST): {latency * 1000:.0f} ms")
        [delivery] = await settled(stub, merchant, created.endpoint.id)

        got = hook.received[0]
        assert got.method == "POST" and got.path == "/hook"
        assert got.headers["checkout-event-id"] == str(event_id)
        assert got.headers["content-type"] == "application/json"
        signing.verify(created.secret, got.body, got.headers["checkout-signature"])  # raises if not
        with pytest.raises(signing.SignatureError):
            signing.verify(paid_only.secret, got.body, got.headers["checkout-signature"])
        body = json.loads(got.body)
        assert set(body) == {"id", "type", "created_at", "data"}
        assert (body["id"], body["type"]) == (str(event_id), "invoice.created")
        assert body["data"]["invoice_id"] == str(invoice_id) and body["data"]["total"] == "25.00"

        assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)
        assert delivery.event_id == str(event_id) and delivery.invoice_id == str(invoice_id)
        [attempt] = delivery.attempt_log
        assert (attempt.attempt, attempt.status, attempt.response_code, attempt.response_body) == (
            1,
            "succeeded",
            200,
            "ok",
        )
        # The endpoint subscribed to invoice.paid only got nothing, and has no delivery.
        assert other.received == []
        assert await deliveries(stub, merchant, paid_only.endpoint.id) == []

        # NATS delivering the same event again (a relay republishing after a crash) sends nothing.
        seq = await source.redeliver(await _stored(source, invoice_id))
        await poll(
            lambda: source.consumer_acked_through("merchant-webhooks-s0", seq), what="the duplicate's ack"
        )
        assert len(hook.received) == 1
        assert len(await deliveries(stub, merchant, created.endpoint.id)) == 1


async def _stored(source: EventSource, invoice_id: uuid.UUID) -> Any:
    async with source.pools[source.shard_of(invoice_id)].acquire() as conn:
        [event] = await source.store.load(conn, invoice_id)
    return event


async def test_any_invoice_event_type_is_delivered_by_its_name_and_json_alone(
    config: Config, source: EventSource, hook: Receiver, nats_client: Any
) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        endpoint = await create_endpoint(stub, merchant, hook.url(), events=["*"])
        invoice_id = uuid.uuid4()
        data = {"invoice_id": str(invoice_id), "merchant_id": str(merchant), "status": "weird", "x": [1]}
        event_id = await publish(
            nats_client.jetstream(),
            config,
            event_type="invoice.brand_new_kind",
            data=data,
            aggregate_id=merchant,
        )
        await poll(lambda: len(hook.received) == 1, what="the webhook POST")
        body = json.loads(hook.received[0].body)
        assert (body["id"], body["type"], body["data"]) == (str(event_id), "invoice.brand_new_kind", data)
        signing.verify(endpoint.secret, hook.received[0].body, hook.received[0].headers["checkout-signature"])


async def test_a_receiver_failing_twice_then_succeeding_gets_three_attempts_on_schedule(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    hook.script = [Reply(500, body=b"boom"), Reply(503), Reply(200)]
    async with running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        endpoint = await create_endpoint(stub, merchant, hook.url())
        await new_invoice(source, merchant)
        [delivery] = await settled(stub, merchant, endpoint.endpoint.id)

    first, second, third = hook.received
    # Exponential from 0.3 s: the second attempt 0.3 s after the first, the third 0.6 s later.
    assert 0.3 <= second.at - first.at < 0.3 + 1.0
    assert 0.6 <= third.at - second.at < 0.6 + 1.0
    assert len({r.headers["checkout-event-id"] for r in hook.received}) == 1
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    assert [(a.attempt, a.status, a.response_code) for a in delivery.attempt_log] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert delivery.attempt_log[0].response_body == "boom"
    assert delivery.attempt_log[0].error == "HTTP 500"
    times = [a.attempted_at.ToDatetime(tzinfo=dt.UTC) for a in delivery.attempt_log]
    assert (times[1] - times[0]).total_seconds() >= 0.3 and (times[2] - times[1]).total_seconds() >= 0.6
    assert all(a.duration_ms >= 0 for a in delivery.attempt_log)


async def test_a_400_is_not_retried_and_a_429_waits_for_retry_after(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with receiver() as limited, running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        hook.script = [Reply(400, body=b"bad payload")]
        limited.script = [Reply(429, headers={"Retry-After": "2"}), Reply(200)]
        refusing = await create_endpoint(stub, merchant, hook.url())
        throttled = await create_endpoint(stub, merchant, limited.url())
        await new_invoice(source, merchant)

        [refused] = await settled(stub, merchant, refusing.endpoint.id)
        assert (refused.status, refused.attempts, refused.response_code) == ("failed", 1, 400)
        assert not refused.HasField("next_attempt_at")  # nothing scheduled: it will not be retried
        assert len(hook.received) == 1

        [waited] = await settled(stub, merchant, throttled.endpoint.id)
        assert (waited.status, waited.attempts) == ("succeeded", 2)
        first, second = limited.received
        assert second.at - first.at >= 2.0  # not the 0.3 s the backoff alone would give


async def test_a_worker_killed_mid_schedule_finishes_the_retries_after_a_restart_without_duplicates(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    slow = dataclasses.replace(config, webhook_retry_base_seconds=1.5)
    hook.script = [Reply(500), Reply(500), Reply(200)]
    async with receiver() as steady:
        async with running(SPEC, slow) as (_, channel):
            stub = stub_of(channel)
            merchant = await new_merchant(stub, slow)
            flaky = await create_endpoint(stub, merchant, hook.url())
            fine = await create_endpoint(stub, merchant, steady.url())
            await new_invoice(source, merchant)
            await settled(stub, merchant, fine.endpoint.id)
            await poll(lambda: len(hook.received) == 1, what="the first failed attempt")

            async def first_recorded() -> bool:
                [d] = await deliveries(stub, merchant, flaky.endpoint.id)
                return d.attempts == 1 and d.status == "pending"

            await poll(first_recorded, what="the first attempt recorded with a retry scheduled")
        # The service is down; the retry is due in ~1.5 s and lives only in the database.
        async with running(SPEC, slow) as (_, channel):
            stub = stub_of(channel)
            [delivery] = await settled(stub, merchant, flaky.endpoint.id)
            [done] = await deliveries(stub, merchant, fine.endpoint.id)

    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert [a.status for a in delivery.attempt_log] == ["failed", "failed", "succeeded"]
    assert len(hook.received) == 3
    assert len(steady.received) == 1  # the succeeded delivery was not sent again
    assert (done.status, done.attempts) == ("succeeded", 1)


async def test_redelivery_sends_the_same_event_id_with_a_fresh_signature(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        endpoint = await create_endpoint(stub, merchant, hook.url())
        await new_invoice(source, merchant)
        [delivery] = await settled(stub, merchant, endpoint.endpoint.id)
        first = hook.received[0]
        first_t = int(first.headers["checkout-signature"].split(",")[0].removeprefix("t="))
        await poll(lambda: int(time.time()) > first_t, what="the next second")  # so t must differ

        again = await stub.RedeliverWebhook(
            pb.RedeliverWebhookRequest(merchant_id=str(merchant), delivery_id=delivery.id)
        )
        assert again.status == "pending"
        await poll(lambda: len(hook.received) == 2, what="the redelivery")
        [after] = await settled(stub, merchant, endpoint.endpoint.id)

    second = hook.received[1]
    assert second.headers["checkout-event-id"] == first.headers["checkout-event-id"] == delivery.event_id
    assert second.body == first.body
    assert second.headers["checkout-signature"] != first.headers["checkout-signature"]
    signing.verify(endpoint.secret, second.body, second.headers["checkout-signature"])
    assert (after.status, after.attempts, after.id) == ("succeeded", 2, delivery.id)


async def test_another_merchants_endpoint_and_deliveries_are_not_found(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with running(SPEC, config) as (_, channel):
        stub = stub_of(channel)
        owner = await new_merchant(stub, config, tag="owner")
        thief = await new_merchant(stub, config, tag="thief")
        endpoint = await create_endpoint(stub, owner, hook.url())
        await new_invoice(source, owner)
        [delivery] = await settled(stub, owner, endpoint.endpoint.id)

        calls = [
            stub.GetWebhookEndpoint(
                pb.GetWebhookEndpointRequest(merchant_id=str(thief), endpoint_id=endpoint.endpoint.id)
            ),
            stub.ListWebhookDeliveries(
                pb.ListWebhookDeliveriesRequest(merchant_id=str(thief), endpoint_id=endpoint.endpoint.id)
            ),
            stub.GetWebhookDelivery(
                pb.GetWebhookDeliveryRequest(merchant_id=str(thief), delivery_id=delivery.id)
            ),
            stub.RedeliverWebhook(
                pb.RedeliverWebhookRequest(merchant_id=str(thief), delivery_id=delivery.id)
            ),
            stub.UpdateWebhookEndpoint(
                pb.UpdateWebhookEndpointRequest(
                    merchant_id=str(thief), endpoint_id=endpoint.endpoint.id, status="disabled"
                )
            ),
            stub.RotateWebhookSecret(
                pb.RotateWebhookSecretRequest(merchant_id=str(thief), endpoint_id=endpoint.endpoint.id)
            ),
            stub.DeleteWebhookEndpoint(
                pb.DeleteWebhookEndpointRequest(merchant_id=str(thief), endpoint_id=endpoint.endpoint.id)
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListWebhookEndpoints(pb.ListWebhookEndpointsRequest(merchant_id=str(thief)))
        assert list(listed.endpoints) == []
        assert len(hook.received) == 1  # the redelivery attempt did nothing


async def test_endpoints_are_updated_disabled_rotated_and_deleted(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        created = await create_endpoint(stub, merchant, hook.url(), max_retries=3, retry_backoff="linear")
        endpoint_id = created.endpoint.id
        assert (created.endpoint.max_retries, created.endpoint.retry_backoff) == (3, "linear")
        assert created.endpoint.timeout_seconds == 10

        disabled = await stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                merchant_id=str(merchant), endpoint_id=endpoint_id, status="disabled", timeout_seconds=5
            )
        )
        assert (disabled.status, disabled.timeout_seconds) == ("disabled", 5)
        await new_invoice(source, merchant)  # not delivered: the endpoint is disabled
        await poll(lambda: sum(c.applied for c in runtime.consumers) == 1, what="the event consumed")
        rotated = await stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(merchant_id=str(merchant), endpoint_id=endpoint_id)
        )
        assert rotated.secret.startswith("whsec_") and rotated.secret != created.secret
        enabled = await stub.UpdateWebhookEndpoint(
            pb.UpdateWebhookEndpointRequest(
                merchant_id=str(merchant), endpoint_id=endpoint_id, status="active"
            )
        )
        assert enabled.status == "active"
        _, event_id = await new_invoice(source, merchant)
        await poll(lambda: len(hook.received) == 1, what="the delivery after re-enabling")
        got = hook.received[0]
        assert got.headers["checkout-event-id"] == str(event_id)
        # During the rotation's overlap both secrets sign: receivers holding either verify.
        signing.verify(rotated.secret, got.body, got.headers["checkout-signature"])
        signing.verify(created.secret, got.body, got.headers["checkout-signature"])

        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.UpdateWebhookEndpoint(
                pb.UpdateWebhookEndpointRequest(
                    merchant_id=str(merchant), endpoint_id=endpoint_id, replace_events=True, max_retries=99
                )
            )
        remote = from_rpc_error(invalid.value)
        assert remote.code == "invalid_argument"
        assert {d.field for d in remote.details} == {"events", "max_retries"}

        deleted = await stub.DeleteWebhookEndpoint(
            pb.DeleteWebhookEndpointRequest(merchant_id=str(merchant), endpoint_id=endpoint_id)
        )
        assert deleted.status == "deleted"
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await stub.GetWebhookEndpoint(
                pb.GetWebhookEndpointRequest(merchant_id=str(merchant), endpoint_id=endpoint_id)
            )
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_endpoint_failing_past_the_threshold_is_marked_failing_with_its_last_error(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    strict = dataclasses.replace(config, webhook_failing_after=2)
    hook.default = Reply(502, body=b"bad gateway")
    async with running(SPEC, strict) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, strict)
        endpoint = await create_endpoint(stub, merchant, hook.url(), max_retries=1)
        await new_invoice(source, merchant)
        [delivery] = await settled(stub, merchant, endpoint.endpoint.id)
        assert (delivery.status, delivery.attempts) == ("failed", 2)
        seen = await stub.GetWebhookEndpoint(
            pb.GetWebhookEndpointRequest(merchant_id=str(merchant), endpoint_id=endpoint.endpoint.id)
        )
        assert (seen.status, seen.consecutive_failures, seen.last_error) == ("failing", 2, "HTTP 502")
        assert seen.HasField("last_failure_at")

        hook.default = Reply(200)
        await stub.RedeliverWebhook(
            pb.RedeliverWebhookRequest(merchant_id=str(merchant), delivery_id=delivery.id)
        )
        await settled(stub, merchant, endpoint.endpoint.id)
        healed = await stub.GetWebhookEndpoint(
            pb.GetWebhookEndpointRequest(merchant_id=str(merchant), endpoint_id=endpoint.endpoint.id)
        )
        assert (healed.status, healed.consecutive_failures) == ("active", 0)
