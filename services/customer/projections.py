"""Read models the customer service projects from other services' events (via NATS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from checkout.invoice.v1 import events_pb2 as invoice_events

from libs.common import ids
from libs.common.db import Connection
from libs.common.events import PAID_STATUSES, STATUS_EVENTS
from libs.common.messaging import Envelope
from libs.common.protoconv import datetime_of
from services.customer import repository


def customer_id_for(merchant_id: uuid.UUID, email: str) -> uuid.UUID:
    """The id the invoice service gives the customer of (merchant, email)."""
    return ids.derived_id(ids.slot_of(merchant_id), "customer", str(merchant_id), email.lower())


class CustomersProjection:
    """`customers` from `invoice.created`: one customer per (merchant, email), counting invoices.

    Every update is commutative (count + 1, LEAST / GREATEST of times, email normalised), so the
    row is the same whatever order redeliveries bring the events in.
    """

    name = "customers"
    writes_only = True  # a batch's upserts go to PostgreSQL pipelined (libs/common/consumer/projection.py)
    event_types: Sequence[str] = ("invoice.created",)
    reset_sql = repository.RESET_CUSTOMERS  # for `libs.common.consumer.rebuild`

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        if not isinstance(message, invoice_events.InvoiceCreated):
            return
        email = message.customer_email.strip().lower()
        if not email:
            return  # an anonymous invoice has no customer
        merchant_id = uuid.UUID(message.merchant_id)
        customer_id = (
            uuid.UUID(message.customer_id) if message.customer_id else customer_id_for(merchant_id, email)
        )
        seen_at = datetime_of(message.created_at) if message.HasField("created_at") else event.occurred_at
        await repository.record_invoice(
            conn, customer_id=customer_id, merchant_id=merchant_id, email=email, seen_at=seen_at
        )


class PaymentHistoryProjection:
    """`payment_history`: one row per invoice of a known customer, following its status.

    The row is made at `invoice.created` (status `pending`) and every status event moves it.
    The status is guarded by the invoice's aggregate version, so an older event replayed after
    a newer one changes nothing; `paid_at` is the earliest paid time seen (LEAST), so a reorg
    and a second `invoice.paid` keep the first. Both rules are order-independent, so a rebuild
    gives the same rows as the live consumer.
    """

    name = "payment-history"
    writes_only = True
    event_types: Sequence[str] = ("invoice.created", *STATUS_EVENTS)
    reset_sql = repository.RESET_PAYMENT_HISTORY  # for `libs.common.consumer.rebuild`

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        if isinstance(message, invoice_events.InvoiceCreated):
            await self._created(conn, event, message)
            return
        status = STATUS_EVENTS.get(event.type)
        if status is None or not isinstance(message, invoice_events.StatusChange):
            return
        invoice_id = uuid.UUID(message.invoice_id) if message.invoice_id else event.aggregate_id
        at = datetime_of(message.at) if message.HasField("at") else event.occurred_at
        paid_at = at if status in PAID_STATUSES else None
        if not message.customer_id:
            # No customer named: only a row made at invoice.created can follow.
            await repository.follow_invoice(
                conn, invoice_id=invoice_id, status=status, paid_at=paid_at, version=event.version
            )
            return
        await repository.record_payment(
            conn,
            customer_id=uuid.UUID(message.customer_id),
            invoice_id=invoice_id,
            amount=message.total or "0",
            currency=message.currency,
            status=status,
            paid_at=paid_at,
            created_at=at,
            version=event.version,
        )

    async def _created(
        self, conn: Connection, event: Envelope, message: invoice_events.InvoiceCreated
    ) -> None:
        email = message.customer_email.strip().lower()
        merchant_id = uuid.UUID(message.merchant_id)
        if message.customer_id:
            customer_id = uuid.UUID(message.customer_id)
        elif email:
            customer_id = customer_id_for(merchant_id, email)
        else:
            return  # an anonymous invoice has no customer, so no history
        created_at = datetime_of(message.created_at) if message.HasField("created_at") else event.occurred_at
        await repository.record_payment(
            conn,
            customer_id=customer_id,
            invoice_id=uuid.UUID(message.invoice_id) if message.invoice_id else event.aggregate_id,
            amount=message.total or "0",
            currency=message.currency,
            status="pending",
            paid_at=None,
            created_at=created_at,
            version=event.version,
        )
