"""SQL for the customer service's read models."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal, InvalidOperation

import asyncpg

from libs.common.db import Connection
from services.customer.cursor import Position

CUSTOMER_COLUMNS = (
    "id, merchant_id, email, status, metadata, created_at, updated_at, last_seen_at, invoice_count"
)
PAYMENT_COLUMNS = "customer_id, invoice_id, amount, currency, status, paid_at, created_at"


async def record_invoice(
    conn: Connection,
    *,
    customer_id: uuid.UUID,
    merchant_id: uuid.UUID,
    email: str,
    seen_at: dt.datetime,
) -> None:
    """Creates the customer at its first invoice, or counts one more invoice.

    The conflict target is the natural key (merchant, email), the one the API promises is unique;
    the first id seen for it stays the customer's id.
    """
    await conn.execute(
        """INSERT INTO customers (id, merchant_id, email, status, metadata, created_at, updated_at,
                                  last_seen_at, invoice_count)
           VALUES ($1, $2, $3, 'active', '{}', $4, $4, $4, 1)
           ON CONFLICT (merchant_id, (lower(email))) DO UPDATE SET
               invoice_count = customers.invoice_count + 1,
               created_at = LEAST(customers.created_at, EXCLUDED.created_at),
               updated_at = GREATEST(customers.updated_at, EXCLUDED.updated_at),
               last_seen_at = GREATEST(customers.last_seen_at, EXCLUDED.last_seen_at)""",
        customer_id,
        merchant_id,
        email,
        seen_at,
    )


def _amount(raw: str) -> Decimal:
    """A decimal string from an event; a malformed one is a ValueError, which the consumer
    retries rather than storing it wrong."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"amount {raw!r} is not a decimal") from None
    if not value.is_finite():
        raise ValueError(f"amount {raw!r} is not finite")
    return value


async def record_payment(
    conn: Connection,
    *,
    customer_id: uuid.UUID,
    invoice_id: uuid.UUID,
    amount: str,
    currency: str,
    status: str,
    paid_at: dt.datetime | None,
    created_at: dt.datetime,
    version: int,
) -> None:
    """Creates or moves the invoice's history row.

    Order-independent: the status is the one of the highest invoice version seen, `paid_at` the
    earliest paid time (LEAST skips NULLs), `created_at` the earliest time (invoice.created's,
    should a status event ever have made the row first).
    """
    await conn.execute(
        """INSERT INTO payment_history (customer_id, invoice_id, amount, currency, status, paid_at,
                                        created_at, invoice_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (customer_id, invoice_id) DO UPDATE SET
               status = CASE WHEN EXCLUDED.invoice_version > payment_history.invoice_version
                             THEN EXCLUDED.status ELSE payment_history.status END,
               invoice_version = GREATEST(payment_history.invoice_version, EXCLUDED.invoice_version),
               paid_at = LEAST(payment_history.paid_at, EXCLUDED.paid_at),
               created_at = LEAST(payment_history.created_at, EXCLUDED.created_at)""",
        customer_id,
        invoice_id,
        _amount(amount),
        currency,
        status,
        paid_at,
        created_at,
        version,
    )


async def follow_invoice(
    conn: Connection, *, invoice_id: uuid.UUID, status: str, paid_at: dt.datetime | None, version: int
) -> None:
    """Moves an existing row found by invoice alone, with the same rules as `record_payment`."""
    await conn.execute(
        """UPDATE payment_history SET
               status = CASE WHEN $3 > invoice_version THEN $2 ELSE status END,
               invoice_version = GREATEST(invoice_version, $3),
               paid_at = LEAST(paid_at, $4)
           WHERE invoice_id = $1""",
        invoice_id,
        status,
        version,
        paid_at,
    )


async def customer(
    pool: Connection | asyncpg.Pool, merchant_id: uuid.UUID, customer_id: uuid.UUID
) -> asyncpg.Record | None:
    """The merchant's customer; another merchant's customer is simply not there."""
    return await pool.fetchrow(
        f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1 AND merchant_id = $2",
        customer_id,
        merchant_id,
    )


async def customers_after(
    pool: Connection | asyncpg.Pool,
    merchant_id: uuid.UUID,
    email: str | None,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first by (created_at, id): derived ids carry no time order of their own."""
    return list(
        await pool.fetch(
            f"""SELECT {CUSTOMER_COLUMNS} FROM customers
                WHERE merchant_id = $1
                  AND ($2::text IS NULL OR lower(email) = lower($2))
                  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
                ORDER BY created_at DESC, id DESC LIMIT $5""",
            merchant_id,
            email,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


async def payments_after(
    pool: Connection | asyncpg.Pool, customer_id: uuid.UUID, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"""SELECT {PAYMENT_COLUMNS} FROM payment_history
                WHERE customer_id = $1
                  AND ($2::timestamptz IS NULL OR (created_at, invoice_id) < ($2, $3::uuid))
                ORDER BY created_at DESC, invoice_id DESC LIMIT $4""",
            customer_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )
