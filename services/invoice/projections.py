"""Read models of the invoice service.

Inline (in the command's transaction, so a merchant reads its own writes at once): `invoices`
and `audit_entries`, from the Invoice events; `apply` is also what `rebuild` replays. Every value
comes from the stored event (its data, metadata and time), so a rebuild writes identical rows.

Consumed from NATS: `merchant_profiles`, this service's own copy of the merchant data it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from checkout.invoice.v1 import events_pb2 as ev
from checkout.merchant.v1 import events_pb2 as merchant_ev

from libs.common.db import Connection
from libs.common.eventstore import EventStore, StoredEvent
from libs.common.messaging import Envelope
from libs.common.protoconv import datetime_of, plain
from services.invoice import repository

RESET_SQL = "TRUNCATE invoices, payments, audit_entries"


def _optional_uuid(raw: str) -> uuid.UUID | None:
    return uuid.UUID(raw) if raw else None


async def apply(conn: Connection, event: StoredEvent) -> None:
    message = event.message()
    if isinstance(message, ev.InvoiceCreated):
        created_at = datetime_of(message.created_at)
        rate = message.exchange_rate
        await conn.execute(
            """INSERT INTO invoices (id, merchant_id, customer_id, customer_email, title, description,
                   items, subtotal, tax, total, currency, crypto_currency, crypto_amount, network,
                   address_index, payment_address, payment_uri, status, exchange_rate,
                   payment_tolerance, metadata, expires_at, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                   $13, $14, $15, $16, $17, 'pending', $18, $19, $20, $21, $22, $22)""",
            event.aggregate_id,
            uuid.UUID(message.merchant_id),
            _optional_uuid(message.customer_id),
            message.customer_email or None,
            message.title,
            message.description or None,
            [{"name": i.name, "quantity": i.quantity, "unit_price": i.unit_price} for i in message.items],
            Decimal(message.subtotal),
            Decimal(message.tax),
            Decimal(message.total),
            message.currency,
            message.crypto_currency,
            Decimal(message.crypto_amount),
            message.network,
            message.address_index,
            message.payment_address,
            message.payment_uri,
            {
                "rate": rate.rate,
                "source": rate.source,
                "pair": rate.pair,
                "fetched_at": datetime_of(rate.fetched_at).isoformat(),
            },
            {"underpaid_percent": message.payment_tolerance.underpaid_percent},
            plain(message.metadata),
            datetime_of(message.expires_at),
            created_at,
        )
        await _audit(
            conn,
            event,
            message.invoice_id,
            message.merchant_id,
            {
                "total": message.total,
                "currency": message.currency,
                "crypto_amount": message.crypto_amount,
                "crypto_currency": message.crypto_currency,
                "payment_address": message.payment_address,
            },
        )


async def _audit(
    conn: Connection, event: StoredEvent, invoice_id: str, merchant_id: str, data: dict[str, Any]
) -> None:
    """One audit entry per event, keyed by the event id; who and which request from its metadata
    (the request context the event store copied in)."""
    await conn.execute(
        """INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id, data)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        event.id,
        uuid.UUID(invoice_id),
        uuid.UUID(merchant_id),
        event.event_type,
        str(event.metadata.get("actor") or "system"),
        event.created_at,
        event.metadata.get("request_id") or None,
        data,
    )


async def rebuild(conn: Connection, store: EventStore, batch: int = 500) -> int:
    """Drops the inline read models and replays every Invoice event through `apply` (in sequence
    order, so each invoice's events in version order). Call inside a transaction: readers see
    the old rows or the new ones, never none."""
    await conn.execute(RESET_SQL)
    after, replayed = 0, 0
    while events := await store.read_all(conn, after_sequence=after, limit=batch, aggregate_type="Invoice"):
        for event in events:
            await apply(conn, event)
        after = events[-1].sequence_number
        replayed += len(events)
    return replayed


class MerchantProfiles:
    """Wallets and settings from the merchant service's events: the xpubs invoices derive
    addresses from, and the default payment tolerance."""

    name = "merchant_profiles"
    event_types: Sequence[str] = ("merchant.created", "merchant.updated")

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        if isinstance(message, merchant_ev.MerchantCreated):
            await repository.upsert_merchant_profile(
                conn,
                event.aggregate_id,
                wallets=dict(message.wallets),
                settings=plain(message.settings),
                at=datetime_of(message.created_at),
            )
        elif isinstance(message, merchant_ev.MerchantUpdated) and (
            message.wallets_changed or message.settings_changed
        ):
            await repository.upsert_merchant_profile(
                conn,
                event.aggregate_id,
                wallets=dict(message.wallets) if message.wallets_changed else None,
                settings=plain(message.settings) if message.settings_changed else None,
                at=datetime_of(message.updated_at),
            )
