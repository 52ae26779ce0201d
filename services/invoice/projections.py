"""Read models of the invoice service.

Inline (in the command's transaction, so a merchant reads its own writes at once): `invoices`,
`payments`, `refunds` and `audit_entries`, from the Invoice events; `apply` is also what `rebuild` replays. Every value
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

from libs.common import events
from libs.common.db import Connection
from libs.common.eventstore import EventStore, InlineWrite, StoredEvent
from libs.common.messaging import Envelope
from libs.common.protoconv import datetime_of, plain
from services.invoice import history, repository

RESET_SQL = "TRUNCATE invoices, payments, audit_entries, refunds"


def _optional_uuid(raw: str) -> uuid.UUID | None:
    return uuid.UUID(raw) if raw else None


async def apply(conn: Connection, event: StoredEvent) -> None:
    """Applies one event (what `rebuild` replays; a command's create writes `created` itself)."""
    message = event.message()
    if isinstance(message, ev.InvoiceCreated):
        await _created(conn, event)
    elif isinstance(message, ev.PaymentDetected):
        await conn.execute(
            """INSERT INTO payments (id, invoice_id, merchant_id, network, tx_hash, output_index, asset,
                   amount, from_address, to_address, status, confirmations, required_confirmations,
                   block_number, block_hash, late, detected_at, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, $17)
               ON CONFLICT (tx_hash, output_index) DO UPDATE SET
                   status = EXCLUDED.status, confirmations = EXCLUDED.confirmations,
                   block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
                   late = EXCLUDED.late, status_reason = NULL, confirmed_at = NULL,
                   detected_at = EXCLUDED.detected_at, updated_at = EXCLUDED.updated_at""",
            uuid.UUID(message.payment_id),
            event.aggregate_id,
            uuid.UUID(message.merchant_id),
            message.network,
            message.tx_hash,
            message.output_index,
            message.asset,
            Decimal(message.amount),
            message.from_address or None,
            message.to_address,
            message.status,
            message.confirmations,
            message.required_confirmations,
            message.block_number if message.HasField("block_number") else None,
            message.block_hash or None,
            message.late,
            event.created_at,
        )
        await _totals(conn, event, message.amount_paid, message.overpaid, message.late)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentUpdated):
        await conn.execute(
            """UPDATE payments SET block_number = $2, block_hash = $3, confirmations = $4, status = $5,
                   updated_at = $6
               WHERE tx_hash = $1 AND output_index = $7""",
            message.tx_hash,
            message.block_number if message.HasField("block_number") else None,
            message.block_hash or None,
            message.confirmations,
            message.status,
            event.created_at,
            message.output_index,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentConfirmed):
        await conn.execute(
            """UPDATE payments SET status = 'confirmed', confirmations = $2, confirmed_at = $3, updated_at = $3
               WHERE tx_hash = $1 AND output_index = $4""",
            message.tx_hash,
            message.confirmations,
            event.created_at,
            message.output_index,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentReorged):
        await conn.execute(
            """UPDATE payments SET status = 'reorged', status_reason = $2, updated_at = $3
               WHERE tx_hash = $1 AND output_index = $4""",
            message.tx_hash,
            message.reason,
            event.created_at,
            message.output_index,
        )
        await _totals(conn, event, message.amount_paid, message.overpaid, False)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.RefundCreated | ev.RefundClaimed | ev.RefundCompleted | ev.RefundCancelled):
        await repository.apply_refund(conn, event.aggregate_id, message, event.created_at)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.StatusChange):
        status = events.STATUS_EVENTS[event.event_type]
        await conn.execute(
            """UPDATE invoices SET status = $2, overpaid = $3, paid_late = $4, status_reason = $5,
                   updated_at = $6,
                   paid_at = CASE WHEN $7 THEN COALESCE(paid_at, $6) ELSE paid_at END
               WHERE id = $1""",
            event.aggregate_id,
            status,
            message.overpaid,
            message.paid_late,
            message.reason or None,
            event.created_at,
            status in events.PAID_STATUSES,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))


# InvoiceCreated's rows, the invoice and its first audit entry, as CTEs that write only once the
# append's `head` has moved: a create sends them in its append's own statement.
_CREATED_CTES = f"""invoice AS (
       INSERT INTO invoices (id, merchant_id, customer_id, customer_email, title, description,
           items, subtotal, tax, total, currency, crypto_currency, crypto_amount, network,
           address_index, payment_address, payment_uri, status, exchange_rate,
           payment_tolerance, metadata, expires_at, created_at, updated_at)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
           $13, $14, $15, $16, $17, 'pending', $18, $19, $20, $21, $22, $22 FROM head
       RETURNING {repository.INVOICE_COLUMNS}),
   audit AS (
       INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id,
           data, event_version)
       SELECT $23, $24, $25, $26, $27, $28, $29, $30, $31 FROM invoice)"""


def created(event: StoredEvent) -> InlineWrite:
    """The rows of an InvoiceCreated event, to be written in its append's statement."""
    message = event.message()
    assert isinstance(message, ev.InvoiceCreated)
    rate = message.exchange_rate
    args = (
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
        datetime_of(message.created_at),
        *_audit_values(
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
        ),
    )
    return InlineWrite(_CREATED_CTES, args, "invoice")


async def _created(conn: Connection, event: StoredEvent) -> None:
    """The invoice row and its first audit entry in one statement (in a rebuild the event is
    stored already, so its `head` is just a row)."""
    write = created(event)
    await conn.execute(f"WITH head AS (SELECT 1), {write.ctes} SELECT 1 FROM invoice", *write.args)


async def _totals(conn: Connection, event: StoredEvent, amount_paid: str, overpaid: bool, late: bool) -> None:
    await conn.execute(
        """UPDATE invoices SET amount_paid = $2, overpaid = $3, paid_late = paid_late OR $4, updated_at = $5
           WHERE id = $1""",
        event.aggregate_id,
        Decimal(amount_paid),
        overpaid,
        late,
        event.created_at,
    )


def _audit_values(
    event: StoredEvent, invoice_id: str, merchant_id: str, data: dict[str, Any]
) -> tuple[Any, ...]:
    """One audit entry per event, keyed by the event id; who and which request from its metadata
    (the request context the event store copied in)."""
    return (
        event.id,
        uuid.UUID(invoice_id),
        uuid.UUID(merchant_id),
        event.event_type,
        str(event.metadata.get("actor") or "system"),
        event.created_at,
        event.metadata.get("request_id") or None,
        data,
        event.version,
    )


async def _audit(
    conn: Connection, event: StoredEvent, invoice_id: str, merchant_id: str, data: dict[str, Any]
) -> None:
    await conn.execute(
        """INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id, data,
               event_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        *_audit_values(event, invoice_id, merchant_id, data),
    )


async def rebuild(conn: Connection, store: EventStore, batch: int = 500) -> int:
    """Drops the inline read models and replays every Invoice event through `apply` (in sequence
    order, so each invoice's events in version order). Call inside a transaction: readers see
    the old rows or the new ones, never none."""
    # First: archived audit partitions still point at the invoices the reset truncates.
    await history.unarchive_for_rebuild(conn, await conn.fetchval("SELECT min(created_at) FROM events"))
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
    writes_only = True  # a batch's upserts go to PostgreSQL pipelined (libs/common/consumer/projection.py)
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
