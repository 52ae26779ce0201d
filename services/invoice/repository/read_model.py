"""SQL of the inline read models' writes: `invoices`, `payments` and `audit_entries` as the
projection (services/invoice/projections.py) decides them from each Invoice event. Each function
is one statement, so a projection's statement count is what its handler calls."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, NamedTuple

from libs.common.db import Connection
from libs.common.eventstore import InlineWrite
from services.invoice.repository.invoices import INVOICE_COLUMNS

RESET_SQL = "TRUNCATE invoices, payments, audit_entries, refunds"


class AuditEntry(NamedTuple):
    """An audit entry's row, in its columns' order (a tuple: built for every event, so cheap)."""

    id: uuid.UUID
    invoice_id: uuid.UUID
    merchant_id: uuid.UUID
    event: str
    actor: str
    timestamp: dt.datetime
    request_id: Any
    data: dict[str, Any]
    event_version: int


async def reset(conn: Connection) -> None:
    """Empties the inline read models (a rebuild, inside its transaction)."""
    await conn.execute(RESET_SQL)


async def oldest_event_at(conn: Connection) -> dt.datetime | None:
    return await conn.fetchval("SELECT min(created_at) FROM events")  # type: ignore[no-any-return]


async def drop_table(conn: Connection, table: str) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {table}")


# InvoiceCreated's rows, the invoice and its first audit entry, as CTEs that write only once the
# append's `head` has moved: a create sends them in its append's own statement.
_CREATED_CTES = f"""invoice AS (
       INSERT INTO invoices (id, merchant_id, customer_id, customer_email, title, description,
           items, subtotal, tax, total, currency, crypto_currency, crypto_amount, network,
           address_index, payment_address, payment_uri, status, exchange_rate,
           payment_tolerance, metadata, expires_at, created_at, updated_at)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
           $13, $14, $15, $16, $17, 'pending', $18, $19, $20, $21, $22, $22 FROM head
       RETURNING {INVOICE_COLUMNS}),
   audit AS (
       INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id,
           data, event_version)
       SELECT $23, $24, $25, $26, $27, $28, $29, $30, $31 FROM invoice)"""


class NewInvoice(NamedTuple):
    """An InvoiceCreated event's invoice row, in the statement's order ($1-$22); its status is
    pending. A tuple, built on every create: cheaper than a call with these as keywords."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    customer_id: uuid.UUID | None
    customer_email: str | None
    title: str
    description: str | None
    items: list[dict[str, Any]]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    currency: str
    crypto_currency: str
    crypto_amount: Decimal
    network: str
    address_index: int
    payment_address: str
    payment_uri: str
    exchange_rate: dict[str, Any]
    payment_tolerance: dict[str, Any]
    metadata: Any
    expires_at: dt.datetime
    created_at: dt.datetime


def invoice_created(invoice: NewInvoice, audit: AuditEntry) -> InlineWrite:
    """A new invoice and its first audit entry, for its append's statement."""
    return InlineWrite(_CREATED_CTES, invoice + audit, "invoice")


async def write_created(conn: Connection, write: InlineWrite) -> None:
    """`invoice_created`'s rows on their own (in a rebuild the event is stored already: `head` is a row)."""
    await conn.execute(f"WITH head AS (SELECT 1), {write.ctes} SELECT 1 FROM invoice", *write.args)


class DetectedPayment(NamedTuple):
    """A PaymentDetected event's payment row, in the statement's order ($1-$17; `at` is its
    detected, created and updated time)."""

    id: uuid.UUID
    invoice_id: uuid.UUID
    merchant_id: uuid.UUID
    network: str
    tx_hash: str
    output_index: int
    asset: str
    amount: Decimal
    from_address: str | None
    to_address: str
    status: str
    confirmations: int
    required_confirmations: int
    block_number: int | None
    block_hash: str | None
    late: bool
    at: dt.datetime


async def payment_detected(conn: Connection, payment: DetectedPayment) -> None:
    """A payment seen (again, after a reorg: its row comes back to life)."""
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
        *payment,
    )


async def payment_updated(
    conn: Connection,
    *,
    tx_hash: str,
    output_index: int,
    block_number: int | None,
    block_hash: str | None,
    confirmations: int,
    status: str,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE payments SET block_number = $2, block_hash = $3, confirmations = $4, status = $5,
               updated_at = $6
           WHERE tx_hash = $1 AND output_index = $7""",
        tx_hash,
        block_number,
        block_hash,
        confirmations,
        status,
        at,
        output_index,
    )


async def payment_confirmed(
    conn: Connection, *, tx_hash: str, output_index: int, confirmations: int, at: dt.datetime
) -> None:
    await conn.execute(
        """UPDATE payments SET status = 'confirmed', confirmations = $2, confirmed_at = $3, updated_at = $3
           WHERE tx_hash = $1 AND output_index = $4""",
        tx_hash,
        confirmations,
        at,
        output_index,
    )


async def payment_reorged(
    conn: Connection, *, tx_hash: str, output_index: int, reason: str, at: dt.datetime
) -> None:
    await conn.execute(
        """UPDATE payments SET status = 'reorged', status_reason = $2, updated_at = $3
           WHERE tx_hash = $1 AND output_index = $4""",
        tx_hash,
        reason,
        at,
        output_index,
    )


async def status_changed(
    conn: Connection,
    invoice_id: uuid.UUID,
    *,
    status: str,
    overpaid: bool,
    paid_late: bool,
    reason: str | None,
    paid: bool,
    at: dt.datetime,
) -> None:
    """The invoice's new status; `paid` (the status counts as paid) stamps paid_at once."""
    await conn.execute(
        """UPDATE invoices SET status = $2, overpaid = $3, paid_late = $4, status_reason = $5,
               updated_at = $6,
               paid_at = CASE WHEN $7 THEN COALESCE(paid_at, $6) ELSE paid_at END
           WHERE id = $1""",
        invoice_id,
        status,
        overpaid,
        paid_late,
        reason,
        at,
        paid,
    )


async def totals(
    conn: Connection,
    invoice_id: uuid.UUID,
    *,
    amount_paid: Decimal,
    overpaid: bool,
    late: bool,
    at: dt.datetime,
) -> None:
    await conn.execute(
        """UPDATE invoices SET amount_paid = $2, overpaid = $3, paid_late = paid_late OR $4, updated_at = $5
           WHERE id = $1""",
        invoice_id,
        amount_paid,
        overpaid,
        late,
        at,
    )


async def add_audit_entry(conn: Connection, entry: AuditEntry) -> None:
    await conn.execute(
        """INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id, data,
               event_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        *entry,
    )
