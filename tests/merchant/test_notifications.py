"""Notification templates and email delivery: a real SMTP receiver (aiosmtpd) on loopback."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from services.merchant.service import SPEC
from services.merchant.webhooks import templates
from tests.common.eventsource import EventSource, event_source, invoice_created
from tests.common.support import poll
from tests.merchant.webhook_support import Mailbox, mailbox, new_merchant, publish, stub_of
from tests.services import running


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


@pytest.fixture
async def box() -> AsyncIterator[Mailbox]:
    async with mailbox() as started:
        yield started


def template(merchant: uuid.UUID, **fields: Any) -> pb.CreateNotificationTemplateRequest:
    values: dict[str, Any] = {
        "event_type": "invoice.created",
        "subject": "Invoice ${title}: ${total} ${currency}",
        "body_template": "Pay ${crypto_amount} ${crypto_currency} to ${payment_address}.\nStatus: ${status}.",
        **fields,
    }
    return pb.CreateNotificationTemplateRequest(merchant_id=str(merchant), **values)


async def test_a_template_with_an_unknown_or_broken_field_is_rejected_when_saved(config: Config) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateNotificationTemplate(
                template(
                    merchant,
                    subject="Hi ${customer_name}",
                    body_template="Total: $ 5",
                    event_type="invoice.nope",
                )
            )
        remote = from_rpc_error(error.value)
        assert remote.code == "invalid_argument"
        reasons = {d.field: d.reason for d in remote.details}
        assert set(reasons) == {"subject", "body_template", "event_type"}
        assert reasons["subject"].startswith("unknown field ${customer_name}; use one of invoice_id, title")
        assert "$$" in reasons["body_template"]
        assert await runtime.pool_for(merchant).fetchval("SELECT count(*) FROM notification_templates") == 0

        created = await stub.CreateNotificationTemplate(template(merchant))
        with pytest.raises(grpc.aio.AioRpcError) as broken:
            await stub.UpdateNotificationTemplate(
                pb.UpdateNotificationTemplateRequest(
                    merchant_id=str(merchant), template_id=created.id, body_template="${oops}"
                )
            )
        assert [d.field for d in from_rpc_error(broken.value).details] == ["body_template"]


async def test_a_notification_email_arrives_with_the_rendered_subject_and_body(
    config: Config, source: EventSource, box: Mailbox, nats_client: Any
) -> None:
    mail = dataclasses.replace(
        config, smtp_url=box.url, smtp_from="shop@checkout.test", webhook_poll_seconds=0.2
    )
    async with running(SPEC, mail) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, mail)
        created = await stub.CreateNotificationTemplate(template(merchant))
        assert (created.recipient, created.is_active) == ("customer", True)
        paid = await stub.CreateNotificationTemplate(
            template(
                merchant,
                event_type="invoice.paid",
                subject="Paid: ${title}",
                body_template="${customer_email} paid ${amount_paid} ${crypto_currency} (${status}) to ${merchant_name}",
                recipient="merchant",
            )
        )
        invoice_id, event = invoice_created(
            merchant, total="25.00", at=dt.datetime.now(dt.UTC), email="Buyer@Example.com"
        )
        event.crypto_amount = "0.0104"
        event.payment_address = "0xabc"
        await source.append(invoice_id, "Invoice", event)
        await poll(lambda: len(box.messages) == 1, what="the invoice.created email")
        message = box.messages[0]
        assert message["Subject"] == "Invoice Order: 25.00 USD"
        assert message["To"] == "buyer@example.com" and message["From"] == "shop@checkout.test"
        assert (
            message.get_content().replace("\r\n", "\n").strip()
            == "Pay 0.0104 ETH to 0xabc.\nStatus: pending."
        )

        # A later status event (only its type name and JSON needed) renders with the new status.
        await publish(
            nats_client.jetstream(),
            mail,
            event_type="invoice.paid",
            data={
                "invoice_id": str(invoice_id),
                "merchant_id": str(merchant),
                "status": "paid",
                "amount_paid": "0.0104",
            },
            aggregate_id=invoice_id,
        )
        await poll(lambda: len(box.messages) == 2, what="the invoice.paid email")
        to_merchant = box.messages[1]
        assert to_merchant["Subject"] == "Paid: Order"
        merchant_row = await stub.GetMerchant(pb.GetMerchantRequest(merchant_id=str(merchant)))
        assert to_merchant["To"] == merchant_row.contact_email
        assert (
            to_merchant.get_content().replace("\r\n", "\n").strip()
            == "buyer@example.com paid 0.0104 ETH (paid) to Hook Shop"
        )

        async def recorded() -> list[pb.NotificationDelivery]:
            listed = await stub.ListNotificationDeliveries(
                pb.ListNotificationDeliveriesRequest(merchant_id=str(merchant))
            )
            return list(listed.deliveries)

        await poll(lambda: _all_sent(recorded()), what="both deliveries recorded as sent")
        deliveries = await recorded()
        assert {(d.template_id, d.status, d.attempts, d.delivery_method) for d in deliveries} == {
            (created.id, "sent", 1, "email"),
            (paid.id, "sent", 1, "email"),
        }


async def _all_sent(pending: Any) -> bool:
    deliveries = await pending
    return len(deliveries) == 2 and all(d.status == "sent" for d in deliveries)


async def test_an_unreachable_smtp_server_is_retried_and_recorded(
    config: Config, source: EventSource
) -> None:
    async with mailbox() as box:
        dead_port = box.port
    # Nothing listens on dead_port now: every attempt fails to connect, is recorded and retried.
    mail = dataclasses.replace(
        config,
        smtp_url=f"smtp://127.0.0.1:{dead_port}",
        webhook_retry_base_seconds=0.1,
        webhook_poll_seconds=0.2,
    )
    async with running(SPEC, mail) as (_, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, mail)
        await stub.CreateNotificationTemplate(template(merchant))
        invoice_id, event = invoice_created(
            merchant, total="9.00", at=dt.datetime.now(dt.UTC), email="a@b.test"
        )
        await source.append(invoice_id, "Invoice", event)
        found: list[pb.NotificationDelivery] = []

        async def gave_up() -> bool:
            nonlocal found
            listed = await stub.ListNotificationDeliveries(
                pb.ListNotificationDeliveriesRequest(merchant_id=str(merchant), status="failed")
            )
            found = list(listed.deliveries)
            return len(found) == 1

        await poll(gave_up, timeout=20, what="the notification given up after its attempts")
        assert found[0].attempts == 5
        assert "Connection" in found[0].last_error or "refused" in found[0].last_error


def test_the_template_fields_are_the_documented_invoice_fields() -> None:
    assert templates.problems("${title} ${total} $$5") == []
    assert templates.render("${title}: $$${total}", {"title": "Tea", "total": "2.50"}) == "Tea: $2.50"
