"""Read models of webhooks and notifications.

Inline (in the command's transaction): `webhook_endpoints` (+ its health row) and
`notification_templates`, from their aggregates' events.

Consumed from NATS: every `invoice.*` and `refund.*` event, handled by its type name and JSON data alone (no
proto class needed, so invoice event types added later flow through unchanged). In the
consumer's transaction it updates `invoice_summaries` and queues one webhook delivery per
subscribed endpoint and one notification per active template; the senders (delivery.py) pick
them up from the database.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from checkout.merchant.v1 import events_pb2 as ev

from libs.common import events, ids
from libs.common.db import Connection
from libs.common.eventstore import StoredEvent
from libs.common.messaging import Envelope
from libs.common.protoconv import datetime_of
from services.merchant.feed import repository as feed_repository
from services.merchant.feed.application import Feed
from services.merchant.webhooks import repository, templates

log = logging.getLogger("checkout.merchant.webhooks")


def _id(raw: str) -> uuid.UUID:
    return uuid.UUID(raw)


def secret_ref(event: StoredEvent, message: ev.WebhookEndpointCreated | ev.WebhookSecretRotated) -> uuid.UUID:
    """Where the endpoint's new signing secret is kept: its row in webhook_secrets or, for an
    event written before references (it holds the secret itself), that event (vault.py)."""
    return uuid.UUID(message.secret_ref) if message.secret_ref else event.id


async def apply(conn: Connection, event: StoredEvent) -> None:
    message = event.message()
    if isinstance(message, ev.WebhookEndpointCreated):
        await repository.endpoint_created(
            conn,
            event.aggregate_id,
            merchant_id=_id(message.merchant_id),
            url=message.url,
            events=list(message.events),
            secret_ref=secret_ref(event, message),
            max_retries=message.max_retries,
            retry_backoff=message.retry_backoff,
            timeout_seconds=message.timeout_seconds,
            allowed_ips=list(message.allowed_ips),
            at=datetime_of(message.created_at),
        )
    elif isinstance(message, ev.WebhookEndpointUpdated):
        await repository.endpoint_updated(
            conn,
            event.aggregate_id,
            url=message.url if message.HasField("url") else None,
            events=list(message.events) if message.events_changed else None,
            max_retries=message.max_retries if message.HasField("max_retries") else None,
            retry_backoff=message.retry_backoff if message.HasField("retry_backoff") else None,
            timeout_seconds=message.timeout_seconds if message.HasField("timeout_seconds") else None,
            allowed_ips=list(message.allowed_ips) if message.allowed_ips_changed else None,
            status=message.status if message.HasField("status") else None,
            at=datetime_of(message.updated_at),
        )
        if message.HasField("url") or message.HasField("status"):
            # A new target (or a re-enabled one) starts with a clean record.
            await repository.clear_endpoint_failures(conn, event.aggregate_id)
    elif isinstance(message, ev.WebhookSecretRotated):
        await repository.secret_rotated(
            conn,
            event.aggregate_id,
            secret_ref=secret_ref(event, message),
            previous_expires_at=datetime_of(message.previous_expires_at),
            at=datetime_of(message.rotated_at),
        )
    elif isinstance(message, ev.WebhookEndpointDeleted):
        await repository.endpoint_deleted(conn, event.aggregate_id)
    elif isinstance(message, ev.NotificationTemplateCreated):
        await repository.template_created(
            conn,
            event.aggregate_id,
            merchant_id=_id(message.merchant_id),
            event_type=message.event_type,
            subject=message.subject,
            body_template=message.body_template,
            recipient=message.recipient,
            is_active=message.is_active,
            at=datetime_of(message.created_at),
        )
    elif isinstance(message, ev.NotificationTemplateUpdated):
        await repository.template_updated(
            conn,
            event.aggregate_id,
            event_type=message.event_type if message.HasField("event_type") else None,
            subject=message.subject if message.HasField("subject") else None,
            body_template=message.body_template if message.HasField("body_template") else None,
            recipient=message.recipient if message.HasField("recipient") else None,
            is_active=message.is_active if message.HasField("is_active") else None,
            at=datetime_of(message.updated_at),
        )
    elif isinstance(message, ev.NotificationTemplateDeleted):
        await repository.template_deleted(conn, event.aggregate_id)


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def payload(event: Envelope) -> str:
    """The body POSTed to every subscribed endpoint, fixed once so every attempt sends (and
    signs) the same bytes."""
    return json.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "created_at": _rfc3339(event.occurred_at),
            "data": event.data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _summary_values(event: Envelope) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not event.type.startswith("invoice."):
        # A refund's amounts and status are its own, not the invoice's: the summary keeps its own.
        return values
    data = event.data
    for name in ("title", "currency", "crypto_currency", "payment_address", "customer_email", "status"):
        raw = data.get(name)
        if isinstance(raw, str) and raw:
            values[name] = raw.strip().lower() if name == "customer_email" else raw
    for name in ("total", "crypto_amount", "amount_paid"):
        amount = repository.decimal_or_none(data.get(name))
        if amount is not None:
            values[name] = amount
    if event.type == "invoice.created":
        values.setdefault("status", "pending")
    return values


def _owners(event: Envelope) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The merchant and the invoice an invoice or refund event belongs to (None: not named)."""
    merchant_id = ids.parse_id(str(event.data.get("merchant_id") or ""))
    invoice_id = ids.parse_id(str(event.data.get("invoice_id") or "")) or (
        event.aggregate_id if event.aggregate_type == "Invoice" else None
    )
    return merchant_id, invoice_id


def _no_merchant(event: Envelope) -> None:
    log.warning("%s %s has no merchant_id; nothing to deliver", event.type, event.id)


def _text(value: object) -> str:
    return "" if value is None else str(value)


class InvoiceEvents:
    """Turns each invoice event into an entry of the merchant's event feed, queued webhook
    deliveries and notification emails.

    The feed's sequence is gapless and in recording order whatever the consumers do (the head
    row's lock orders them: services/merchant/migrations/1005_event_feed.sql); one consumer per
    shard applies the stream in order, so for a merchant it is also the order of the stream."""

    name = "webhooks"
    event_types: Sequence[str] = tuple(f"{prefix}>" for prefix in events.INVOICE_EVENT_PREFIXES)
    # The feed is not reset: a rebuild's replay finds its events there already (or too old).
    reset_sql = repository.RESET_SUMMARIES

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    async def apply_batch(self, conn: Connection, events: Sequence[Envelope]) -> None:
        """`apply` of each event in turn, in a few statements for the whole batch: the merchants'
        endpoints and templates in one query each, the summaries, webhook events and deliveries
        pipelined, the feed in three. A batch touching a merchant's active template (rendering
        needs each event's summary as it stood) is applied event by event."""
        owned = [(event, *_owners(event)) for event in events]
        merchants = sorted({merchant for _, merchant, _ in owned if merchant is not None})
        if await repository.templated(conn, merchants) & {(m, e.type) for e, m, _ in owned if m}:
            for event in events:
                await self.apply(conn, event)
            return
        endpoints = await repository.subscriptions(conn, merchants)
        summaries, feed, webhook_events, deliveries = [], [], [], []
        for event, merchant_id, invoice_id in owned:
            if merchant_id is None:
                _no_merchant(event)
                continue
            if invoice_id is not None:
                summaries.append((invoice_id, merchant_id, _summary_values(event), event.occurred_at))
            body = payload(event)
            if self.feed.keeps(event.occurred_at):
                feed.append(feed_repository.Entry(merchant_id, event.id, event.type, body))
            if subscribed := repository.subscribed(endpoints.get(merchant_id, []), event.type):
                webhook_events.append(
                    (event.id, merchant_id, invoice_id, event.type, body, event.occurred_at)
                )
                slot = ids.slot_of(merchant_id)
                deliveries += [
                    (ids.new_id(slot), endpoint_id, merchant_id, event.id, invoice_id, event.type)
                    for endpoint_id in subscribed
                ]
        if summaries:
            await repository.upsert_invoices(conn, summaries)
        if feed:
            await feed_repository.record_many(conn, feed)
        if webhook_events:
            await repository.add_webhook_events(conn, webhook_events)
            await repository.add_deliveries(conn, deliveries)

    async def apply(self, conn: Connection, event: Envelope) -> None:
        merchant_id, invoice_id = _owners(event)
        if merchant_id is None:
            _no_merchant(event)
            return
        summary = None
        if invoice_id is not None:
            summary = await repository.upsert_invoice(
                conn, invoice_id, merchant_id, _summary_values(event), event.occurred_at
            )
        slot = ids.slot_of(merchant_id)
        body = payload(event)
        if self.feed.keeps(event.occurred_at):
            await feed_repository.record(conn, merchant_id, event.id, event.type, body)

        endpoints = await repository.subscribed_endpoints(conn, merchant_id, event.type)
        if endpoints:
            await repository.add_webhook_event(
                conn, event.id, merchant_id, invoice_id, event.type, body, event.occurred_at
            )
            for endpoint_id in endpoints:
                await repository.add_delivery(
                    conn, ids.new_id(slot), endpoint_id, merchant_id, event.id, invoice_id, event.type
                )

        active = await repository.active_templates(conn, merchant_id, event.type)
        if not active:
            return
        merchant = await repository.merchant_contact(conn, merchant_id)
        values = {
            "invoice_id": _text(invoice_id),
            "event_type": event.type,
            "merchant_name": merchant["business_name"] if merchant else "",
        }
        if summary is not None:
            for field in templates.FIELDS:
                if field in summary:
                    values[field] = _text(summary[field])
        for template in active:
            if template["recipient"] == "merchant":
                recipient = merchant["contact_email"] if merchant else ""
                missing = "the merchant has no contact_email"
            else:
                recipient = values.get("customer_email", "")
                missing = "the invoice has no customer_email"
            await repository.add_notification(
                conn,
                notification_id=ids.new_id(slot),
                template_id=template["id"],
                merchant_id=merchant_id,
                event_id=event.id,
                invoice_id=invoice_id,
                event_type=event.type,
                recipient=recipient,
                # One line: a field's value must not smuggle a header into the mail.
                subject=" ".join(templates.render(template["subject"], values).split()),
                body=templates.render(template["body_template"], values),
                skipped_because=None if recipient else missing,
            )
