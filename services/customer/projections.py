"""Read models the customer service projects from other services' events (via NATS)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from checkout.invoice.v1 import events_pb2 as invoice_events

from libs.common import ids
from libs.common.db import Connection
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
    event_types: Sequence[str] = ("invoice.created",)
    reset_sql = "TRUNCATE customers"  # for `libs.common.consumer.rebuild`

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
