"""Read models of the invoice service.

Inline (in the command's transaction, so a merchant reads its own writes at once): `invoices`,
`payments`, `refunds` and `audit_entries`, from the Invoice events; `apply` is also what `rebuild` replays. Every value
comes from the stored event (its data, metadata and time), so a rebuild writes identical rows.

Consumed from NATS: `merchant_profiles`, this service's own copy of the merchant data it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine, Sequence
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


def _optional_uuid(raw: str) -> uuid.UUID | None:
    return uuid.UUID(raw) if raw else None


def _block_number(message: ev.PaymentDetected | ev.PaymentUpdated) -> int | None:
    return message.block_number if message.HasField("block_number") else None


async def apply(conn: Connection, event: StoredEvent) -> None:
    """Applies one event (what `rebuild` replays; a command's create writes `created` itself)."""
    message = event.message()
    at = event.created_at
    if isinstance(message, ev.InvoiceCreated):
        await repository.write_created(conn, created(event))
    elif isinstance(message, ev.PaymentDetected):
        payment = repository.DetectedPayment(  # positional: in the row's declared order
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
            _block_number(message),
            message.block_hash or None,
            message.late,
            at,
        )
        await repository.payment_detected(conn, payment)
        await _totals(conn, event, message.amount_paid, message.overpaid, message.late)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentUpdated):
        await repository.payment_updated(
            conn,
            tx_hash=message.tx_hash,
            output_index=message.output_index,
            block_number=_block_number(message),
            block_hash=message.block_hash or None,
            confirmations=message.confirmations,
            status=message.status,
            at=at,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentConfirmed):
        await repository.payment_confirmed(
            conn,
            tx_hash=message.tx_hash,
            output_index=message.output_index,
            confirmations=message.confirmations,
            at=at,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.PaymentReorged):
        await repository.payment_reorged(
            conn, tx_hash=message.tx_hash, output_index=message.output_index, reason=message.reason, at=at
        )
        await _totals(conn, event, message.amount_paid, message.overpaid, False)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.RefundCreated | ev.RefundClaimed | ev.RefundCompleted | ev.RefundCancelled):
        await repository.apply_refund(conn, event.aggregate_id, message, at)
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))
    elif isinstance(message, ev.StatusChange):
        status = events.STATUS_EVENTS[event.event_type]
        await repository.status_changed(
            conn,
            event.aggregate_id,
            status=status,
            overpaid=message.overpaid,
            paid_late=message.paid_late,
            reason=message.reason or None,
            paid=status in events.PAID_STATUSES,
            at=at,
        )
        await _audit(conn, event, message.invoice_id, message.merchant_id, events.encode(message))


def created(event: StoredEvent) -> InlineWrite:
    """The rows of an InvoiceCreated event, to be written in its append's statement."""
    message = event.message()
    assert isinstance(message, ev.InvoiceCreated)
    rate = message.exchange_rate
    invoice = repository.NewInvoice(  # positional: in the row's declared order
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
    )
    audit = _audit_entry(
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
    return repository.invoice_created(invoice, audit)


# _totals and _audit hand back the repository's coroutine rather than awaiting it in a frame of
# their own: every event passes through them, and the extra frame showed in its CPU time.
def _totals(
    conn: Connection, event: StoredEvent, amount_paid: str, overpaid: bool, late: bool
) -> Coroutine[Any, Any, None]:
    return repository.totals(
        conn,
        event.aggregate_id,
        amount_paid=Decimal(amount_paid),
        overpaid=overpaid,
        late=late,
        at=event.created_at,
    )


def _audit_entry(
    event: StoredEvent, invoice_id: str, merchant_id: str, data: dict[str, Any]
) -> repository.AuditEntry:
    """One audit entry per event, keyed by the event id; who and which request from its metadata
    (the request context the event store copied in)."""
    return repository.AuditEntry(  # positional: built for every event, and a tuple is cheapest
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


def _audit(
    conn: Connection, event: StoredEvent, invoice_id: str, merchant_id: str, data: dict[str, Any]
) -> Coroutine[Any, Any, None]:
    return repository.add_audit_entry(conn, _audit_entry(event, invoice_id, merchant_id, data))


async def rebuild(conn: Connection, store: EventStore, batch: int = 500) -> int:
    """Drops the inline read models and replays every Invoice event through `apply` (in sequence
    order, so each invoice's events in version order). Call inside a transaction: readers see
    the old rows or the new ones, never none."""
    # First: archived audit partitions still point at the invoices the reset truncates.
    await history.unarchive_for_rebuild(conn, await repository.oldest_event_at(conn))
    await repository.reset(conn)
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
